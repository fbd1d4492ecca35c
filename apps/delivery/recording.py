"""Recording one attempt's outcome: the retry policy, downgrade/restore and the endpoint's streak.

All in one transaction per outcome. Policy (DESIGN 3.5, 3.6):

* success -> DELIVERED (also after a downgrade: a late success counts); the endpoint's streak goes
  to 0 and a downgraded endpoint is restored (audited, tenant told by email);
* failure -> next attempt on the tenant's schedule (or DELIVERY_RETRY_SCHEDULE), ``Retry-After``
  honoured; the endpoint's streak + 1; at DELIVERY_DOWNGRADE_AFTER_FAILURES consecutive failures the
  endpoint is downgraded, and a notifying delivery that has failed that often (or whose endpoint is
  downgraded) goes out by fallback email + SMS and becomes DOWNGRADED, still retried;
* permanent failure (410, endpoint deleted/disabled, URL now refused) or past ``expires_at`` ->
  FAILED, after sending the fallback if it was never sent (the alert must reach the tenant);
  410 also disables the endpoint (audited, tenant told by email);
* fallback email/SMS rows retry on the same schedule and end FAILED on a permanent error.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from apps.audit.services import record as audit
from apps.core import clock

from . import backoff, outbox, state
from .dispatch import Outcome
from .models import NOTIFY_EVENTS, Channel, Delivery, DeliveryAttempt, DeliveryState, WebhookEndpoint

logger = logging.getLogger("apps.delivery")


def retry_schedule(delivery: Delivery) -> list[int]:
    return list(delivery.tenant.retry_schedule or settings.DELIVERY_RETRY_SCHEDULE)


def record_outcome(outcome: Outcome) -> str:
    """Record ``outcome`` of a claimed delivery; returns the delivery's new state ("" if the claim
    was lost meanwhile: the attempt row is still written, the row is left to its new holder)."""
    d = outcome.delivery
    number = d.attempts + 1
    now = clock.now()
    with transaction.atomic():
        DeliveryAttempt.objects.create(
            delivery=d, number=number, channel=d.channel, started_at=outcome.started_at,
            latency_ms=outcome.latency_ms, status_code=outcome.status_code, success=outcome.ok,
            error="" if outcome.ok else outcome.error.message[:2000],
            response_excerpt=(outcome.result.response_excerpt if outcome.ok else outcome.error.response_excerpt)[:1024],
        )
        if outcome.ok:
            new_state = _succeeded(d, outcome, number, now)
        else:
            new_state = _failed(d, outcome, number, now)
    _log(outcome, number, new_state)
    return new_state


def _held(d: Delivery):
    return Delivery.objects.filter(pk=d.pk, state=DeliveryState.SENDING, claim_token=d.claim_token)


def _succeeded(d: Delivery, outcome: Outcome, number: int, now: datetime) -> str:
    if not _held(d).update(state=DeliveryState.DELIVERED, attempts=number, delivered_at=now, finished_at=now,
                           next_attempt_at=None, claim_token="", last_error="",
                           last_status_code=outcome.status_code):
        return ""
    d.state = DeliveryState.DELIVERED
    if d.channel == Channel.WEBHOOK and d.endpoint_id:
        _endpoint_succeeded(d.endpoint)
    state.report(d, {"channel": d.channel, "attempt": number, "status_code": outcome.status_code})
    return d.state


def _failed(d: Delivery, outcome: Outcome, number: int, now: datetime) -> str:
    err = outcome.error
    endpoint = _endpoint_failed(d.endpoint, err, now) if d.channel == Channel.WEBHOOK and d.endpoint_id else None
    final = err.permanent
    next_at = None
    if not final:
        next_at = backoff.next_attempt_at(number, now, retry_after=err.retry_after, schedule=retry_schedule(d))
        max_age = timedelta(seconds=settings.DELIVERY_MAX_AGE_SECONDS)
        # expires_at - max_age: the retry window's start (creation, or the last manual retry).
        final = backoff.gives_up(number, d.expires_at - max_age, next_at, max_age)
    threshold = settings.DELIVERY_DOWNGRADE_AFTER_FAILURES
    downgrade = (d.channel == Channel.WEBHOOK and d.event_type in NOTIFY_EVENTS and d.alert_id is not None
                 and d.downgraded_at is None
                 and (final or number >= threshold or bool(endpoint and endpoint.downgraded_at)))
    downgraded_at = now if downgrade else d.downgraded_at
    if final:
        new_state = DeliveryState.FAILED
    else:
        new_state = DeliveryState.DOWNGRADED if downgraded_at else DeliveryState.PENDING
    fields = dict(state=new_state, attempts=number, next_attempt_at=None if final else next_at, claim_token="",
                  last_error=err.message[:2000], last_status_code=err.status_code, downgraded_at=downgraded_at)
    if final:
        fields["finished_at"] = now
    if not _held(d).update(**fields):
        return ""
    d.state, d.downgraded_at = new_state, downgraded_at
    if downgrade:
        _send_fallback(d, now)
    if final or downgrade:
        state.report(d, {"channel": d.channel, "attempt": number, "status_code": err.status_code,
                         "error": err.message[:300]})
    return new_state


def _send_fallback(d: Delivery, now: datetime) -> None:
    from apps.alerts.models import Alert  # read-only, for rendering the email/SMS

    alert = Alert.objects.select_related("tenant", "plugin").get(pk=d.alert_id)
    rows = outbox.create_fallbacks(alert=alert, event_type=d.event_type, source=d, now=now,
                                   reason="your webhook endpoint did not accept this alert")
    outbox.ring(r.pk for r in rows)


def _endpoint_succeeded(endpoint: WebhookEndpoint) -> None:
    """Streak back to 0; a downgraded endpoint is restored (once: guarded by the conditional UPDATE)."""
    if endpoint.downgraded_at is None and endpoint.failure_streak == 0:
        return  # the common case costs no query
    restored = WebhookEndpoint.objects.filter(pk=endpoint.pk, downgraded_at__isnull=False).update(
        failure_streak=0, downgraded_at=None)
    if not restored:
        WebhookEndpoint.objects.filter(pk=endpoint.pk, failure_streak__gt=0).update(failure_streak=0)
        return
    audit("webhook.restored", target=endpoint, tenant=endpoint.tenant_id, data={"url": endpoint.url})
    outbox.create_notice(
        tenant_id=endpoint.tenant_id, event_type="webhook.restored", subject="Webhook endpoint restored",
        text=f"Your webhook endpoint {endpoint.url} accepts alerts again; alerts go to it as usual.")


def _endpoint_failed(endpoint: WebhookEndpoint, err, now: datetime) -> WebhookEndpoint:
    """Streak + 1 under a row lock (concurrent failures count exactly); downgrade at the threshold;
    410 disables. Returns the updated endpoint."""
    ep = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    ep.failure_streak += 1
    fields = ["failure_streak", "updated_at"]
    if err.status_code == 410 and ep.enabled:
        ep.enabled, ep.disabled_reason = False, f"receiver answered 410 Gone at {now.isoformat()}"
        fields += ["enabled", "disabled_reason"]
        audit("webhook.disabled", target=ep, tenant=ep.tenant_id, data={"url": ep.url, "reason": "410 Gone"})
        outbox.create_notice(
            tenant_id=ep.tenant_id, event_type="webhook.disabled", subject="Webhook endpoint disabled",
            text=f"Your webhook endpoint {ep.url} answered 410 Gone, so it was disabled. Alerts go to your "
                 "fallback email/SMS contacts; re-enable or replace the endpoint through the API.")
    elif ep.enabled and ep.downgraded_at is None and ep.failure_streak >= settings.DELIVERY_DOWNGRADE_AFTER_FAILURES:
        ep.downgraded_at = now
        fields.append("downgraded_at")
        audit("webhook.downgraded", target=ep, tenant=ep.tenant_id,
              data={"url": ep.url, "failure_streak": ep.failure_streak, "error": err.message[:300]})
    ep.save(update_fields=fields)
    return ep


def _log(outcome: Outcome, number: int, new_state: str) -> None:
    d = outcome.delivery
    extra = {"alert_id": d.alert_id, "tenant_id": d.tenant_id, "plugin_id": d.plugin_id, "attempt": number,
             "channel": d.channel, "status": outcome.status_code, "latency_ms": outcome.latency_ms,
             "delivery_id": d.pk, "msg_id": d.msg_id, "state": new_state or "claim-lost"}
    if outcome.ok:
        logger.info("delivery attempt succeeded", extra=extra)
    else:
        logger.warning("delivery attempt failed: %s", outcome.error.message[:300], extra=extra)
