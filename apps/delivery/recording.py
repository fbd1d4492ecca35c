"""Recording one attempt's outcome: the retry policy, downgrade/restore and the endpoint's streak.

All in one transaction per batch of outcomes (``record_outcomes``). Policy (DESIGN 3.5, 3.6):

* success -> DELIVERED (also after a downgrade: a late success counts); the endpoint's streak goes
  to 0 and a downgraded endpoint is restored (audited, tenant told by email) and the rows that
  waited behind its breaker (``breaker``) are rung;
* failure -> next attempt on the tenant's schedule (or DELIVERY_RETRY_SCHEDULE), ``Retry-After``
  honoured; the endpoint's streak + 1; at DELIVERY_DOWNGRADE_AFTER_FAILURES consecutive failures the
  endpoint is downgraded, and a notifying delivery that has failed that often (or whose endpoint is
  downgraded) goes out by fallback email + SMS and becomes DOWNGRADED, still retried (one probe
  at a time while its endpoint is downgraded);
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

from apps.core.vocabulary import NOTIFY_EVENTS
from apps.stream import services as stream
from apps.stream.models import StreamEventType

from . import backoff, breaker, fastpath, feedback, outbox, state
from .dispatch import Outcome
from .feedback import DeliveryReport
from .models import Channel, Delivery, DeliveryState, NotificationChannel, WebhookEndpoint

logger = logging.getLogger("apps.delivery")


def retry_schedule(delivery: Delivery) -> list[int]:
    return list(delivery.tenant.retry_schedule or settings.DELIVERY_RETRY_SCHEDULE)


def _load_tenants(rows: list[Delivery]) -> None:
    """Cache the tenant of the rows that lack it, in one query: only a failure needs it (its retry
    schedule), so neither the claim nor the detect task's first sends load it."""
    field = Delivery._meta.get_field("tenant")
    missing = [d for d in rows if not field.is_cached(d)]
    if not missing:
        return
    tenants = field.related_model.objects.in_bulk({d.tenant_id for d in missing})
    for d in missing:
        if d.tenant_id in tenants:
            field.set_cached_value(d, tenants[d.tenant_id])


def record_outcomes(outcomes: list[Outcome]) -> list[str]:
    """Record a batch of outcomes of claimed deliveries in one transaction; returns each delivery's
    new state ("" where the claim was lost meanwhile: the attempt row is still written, the row is
    left to its new holder). Per batch: one statement inserting the attempt rows and marking the
    successes DELIVERED (``fastpath.insert_attempts``), the endpoints' streaks replayed in the batch's order
    under row locks (one UPDATE per endpoint whose streak or state changes), one UPDATE per failure,
    and one ``feedback.report`` for every alert whose delivery state may have changed."""
    if not outcomes:
        return []
    now = clock.now()
    _load_tenants([o.delivery for o in outcomes if not o.ok])  # their retry schedules
    numbers = [o.delivery.attempts + 1 for o in outcomes]
    states = [""] * len(outcomes)
    with transaction.atomic():
        held_ok = fastpath.insert_attempts(outcomes, numbers, now)
        # Successes whose claim was lost leave the endpoint alone (as before batching).
        counted = [o for o in outcomes if not o.ok or o.delivery.pk in held_ok]
        moved: set[int] = set()  # id() of failures at a URL the endpoint has since left
        after = {**_replay_endpoints(counted, now, moved), **_replay_channels(counted, now)}
        reports: dict[int, DeliveryReport] = {}  # per alert, the batch's last word
        downgraded: list[Delivery] = []
        for i, (o, n) in enumerate(zip(outcomes, numbers)):
            d = o.delivery
            detail = None
            if o.ok:
                if d.pk in held_ok:
                    d.state = states[i] = DeliveryState.DELIVERED
                    detail = {"channel": d.channel, "attempt": n, "status_code": o.status_code}
            else:
                states[i], detail = _failed(d, o, n, now, after.get(id(o)), downgraded, moved=id(o) in moved)
            if detail is not None and state.counts(d):
                reports[d.alert_id] = DeliveryReport(d.alert_id, {
                    "delivery_id": d.pk, "endpoint_id": d.endpoint_id, "event_type": d.event_type,
                    **({"channel_id": d.notification_channel_id} if d.notification_channel_id else {}), **detail})
        send_fallbacks(downgraded, now)
        feedback.report(list(reports.values()))
        # The live stream: every delivery whose outcome was recorded (not those whose claim was lost).
        stream.append_many([(o.delivery.tenant_id, StreamEventType.DELIVERY_UPDATED, o.delivery.alert_id,
                             {"delivery_id": o.delivery.pk, "alert_id": o.delivery.alert_id,
                              "channel": o.delivery.channel, "state": s, "attempt": n, "status_code": o.status_code})
                            for o, n, s in zip(outcomes, numbers, states) if s])
    for o, n, s in zip(outcomes, numbers, states):
        _log(o, n, s)
    return states


def _held(d: Delivery):
    return Delivery.objects.filter(pk=d.pk, state=DeliveryState.SENDING, claim_token=d.claim_token)


def _replay_endpoints(outcomes: list[Outcome], now: datetime, moved: set[int]) -> dict[int, WebhookEndpoint]:
    """Apply the batch's webhook outcomes to their endpoints' streaks, in the batch's order.

    Per endpoint: success -> streak 0 and a downgraded endpoint restored (audited, tenant told);
    failure -> streak + 1, 410 disables, the threshold downgrades (audited). Endpoints that saw a
    failure, or were not clean when claimed, are locked (in id order) and re-read so concurrent
    batches count exactly; an all-success batch on a clean endpoint costs no query. Returns, per
    failed outcome (by ``id(outcome)``), the endpoint as it stood right after that failure, and adds
    to ``moved`` the failed outcomes sent to a URL the endpoint no longer has.
    """
    mine: dict[int, list[Outcome]] = {}
    for o in outcomes:
        d = o.delivery
        if d.channel == Channel.WEBHOOK and d.endpoint_id:
            mine.setdefault(d.endpoint_id, []).append(o)
    dirty = sorted(
        ep_id for ep_id, items in mine.items()
        if any(not o.ok or o.delivery.endpoint.failure_streak or o.delivery.endpoint.downgraded_at for o in items)
    )
    if not dirty:
        return {}
    # NO KEY UPDATE: the streak is not a key, so inserting a delivery that references the endpoint (an
    # escalation in another transaction takes FOR KEY SHARE for the foreign key) need not wait for us;
    # with a plain FOR UPDATE the two deadlocked and PostgreSQL rolled this recording back.
    locked = {ep.pk: ep for ep in WebhookEndpoint.objects.select_for_update(no_key=True).filter(pk__in=dirty)
              .order_by("pk")}
    after: dict[int, WebhookEndpoint] = {}
    threshold = settings.DELIVERY_DOWNGRADE_AFTER_FAILURES
    for ep_id in dirty:
        ep = locked.get(ep_id)
        if ep is None:  # deleted meanwhile
            continue
        before = (ep.failure_streak, ep.downgraded_at, ep.enabled, ep.next_probe_at, ep.failed_probes)
        restored = disabled = downgraded = None
        for o in mine[ep_id]:
            if o.url and o.url != ep.url:
                # Sent before the URL changed: what the old receiver answered neither restores,
                # downgrades, disables nor paces the new one. The row itself is recorded as usual,
                # except that a failure is retried, at the new URL: the old receiver's 410 or
                # Retry-After is not the new one's.
                if not o.ok:
                    after[id(o)] = _as_it_stands(ep)
                    moved.add(id(o))
                continue
            if o.ok:
                ep.failure_streak, ep.next_probe_at, ep.failed_probes = 0, None, 0
                if ep.downgraded_at is not None:
                    ep.downgraded_at, restored = None, True
                continue
            err = o.error
            ep.failure_streak += 1
            probe = ep.downgraded_at is not None and sent_as_probe(o.delivery)
            if err.status_code == 410 and ep.enabled:
                ep.enabled, ep.disabled_reason = False, f"receiver answered 410 Gone at {now.isoformat()}"
                disabled = True
            elif ep.enabled and ep.downgraded_at is None and ep.failure_streak >= threshold:
                ep.downgraded_at, ep.failed_probes, ep.next_probe_at = now, 0, None
                downgraded = err
            if ep.downgraded_at is not None:
                _pace_probes(ep, o, now, probe=probe)
            after[id(o)] = _as_it_stands(ep)
        if (ep.failure_streak, ep.downgraded_at, ep.enabled, ep.next_probe_at, ep.failed_probes) == before:
            continue
        ep.save(update_fields=["failure_streak", "downgraded_at", "enabled", "disabled_reason", "next_probe_at",
                               "failed_probes", "updated_at"])
        if restored and ep.downgraded_at is None:
            audit("webhook.restored", target=ep, tenant=ep.tenant_id, data={"url": ep.url})
            breaker.release(ep, now)
            outbox.create_notice(
                tenant_id=ep.tenant_id, event_type="webhook.restored", subject="Webhook endpoint restored",
                text=f"Your webhook endpoint {ep.url} accepts alerts again; alerts go to it as usual.")
        if disabled:
            audit("webhook.disabled", target=ep, tenant=ep.tenant_id, data={"url": ep.url, "reason": "410 Gone"})
            outbox.create_notice(
                tenant_id=ep.tenant_id, event_type="webhook.disabled", subject="Webhook endpoint disabled",
                text=f"Your webhook endpoint {ep.url} answered 410 Gone, so it was disabled. Alerts go to your "
                     "fallback email/SMS contacts; re-enable or replace the endpoint through the API.")
        if downgraded is not None and ep.downgraded_at is not None:
            audit("webhook.downgraded", target=ep, tenant=ep.tenant_id,
                  data={"url": ep.url, "failure_streak": ep.failure_streak, "error": downgraded.message[:300]})
    return after


def _as_it_stands(ep: WebhookEndpoint) -> WebhookEndpoint:
    """A copy of what ``_failed`` reads of the endpoint now (the replay goes on changing ``ep``)."""
    return WebhookEndpoint(pk=ep.pk, tenant_id=ep.tenant_id, url=ep.url, enabled=ep.enabled,
                           failure_streak=ep.failure_streak, downgraded_at=ep.downgraded_at)


def sent_as_probe(d: Delivery) -> bool:
    """Was this row sent as a breaker's probe? The sweeper claims probes among the parked rows
    (``breaker.probes``) and leaves their ``next_attempt_at`` empty; every other send was claimed due
    (or written claimed, with its first attempt's time): sent before the endpoint was downgraded."""
    return d.next_attempt_at is None


def _pace_probes(ep: WebhookEndpoint, outcome: Outcome, now: datetime, *, probe: bool) -> None:
    """Set when the downgraded ``ep`` may be probed next, after this failure: the retry schedule's
    step for the failures that count (the one that downgraded it is the first, each failed probe
    one more), capped at DELIVERY_PROBE_MAX_INTERVAL_SECONDS, or the receiver's longer Retry-After.

    A send that was in flight when the endpoint was downgraded is not a probe: its failure moves the
    pace only by a longer Retry-After. A storm's sends fail together: the third downgrades the
    endpoint and the dozen behind it fail just after. Counted as probes, they took the pace to its
    cap at once, so a receiver back within seconds waited a minute for its first probe while its
    alerts went to fallback email and SMS."""
    if probe:
        ep.failed_probes += 1
    if probe or ep.next_probe_at is None:
        delay = min(backoff.retry_delay(1 + ep.failed_probes, schedule=retry_schedule(outcome.delivery)),
                    settings.DELIVERY_PROBE_MAX_INTERVAL_SECONDS)
        paced = now + timedelta(seconds=delay)
        # Probes are claimed once next_probe_at has come, so a later one here was set since the
        # claim: a Retry-After of a send recorded meanwhile. The receiver asked for it; keep it.
        ep.next_probe_at = max(paced, ep.next_probe_at) if ep.next_probe_at else paced
    retry_after = outcome.error.retry_after
    if retry_after:
        ep.next_probe_at = max(ep.next_probe_at, now + timedelta(seconds=retry_after))


def _replay_channels(outcomes: list[Outcome], now: datetime) -> dict[int, NotificationChannel]:
    """``_replay_endpoints`` for configured channels (Slack, PagerDuty, ...): per channel, in the
    batch's order, success -> streak 0 and a downgraded channel restored; failure -> streak + 1 and
    the threshold downgrades it (audited). Locks only channels that saw a failure or were not clean.
    Returns, per failed outcome (by ``id(outcome)``), the channel as it stood after that failure."""
    mine: dict[int, list[Outcome]] = {}
    for o in outcomes:
        if o.delivery.notification_channel_id and o.delivery.source_id is None:
            mine.setdefault(o.delivery.notification_channel_id, []).append(o)
    dirty = sorted(cid for cid, items in mine.items()
                   if any(not o.ok or o.delivery.notification_channel is None
                          or o.delivery.notification_channel.failure_streak
                          or o.delivery.notification_channel.downgraded_at for o in items))
    if not dirty:
        return {}
    locked = {c.pk: c for c in NotificationChannel.objects.select_for_update(no_key=True).filter(pk__in=dirty)
              .order_by("pk")}  # NO KEY UPDATE: see _replay_endpoints
    after: dict[int, NotificationChannel] = {}
    threshold = settings.DELIVERY_DOWNGRADE_AFTER_FAILURES
    for cid in dirty:
        channel = locked.get(cid)
        if channel is None:  # deleted meanwhile
            continue
        before = (channel.failure_streak, channel.downgraded_at)
        restored = downgraded = None
        for o in mine[cid]:
            if o.ok:
                channel.failure_streak = 0
                if channel.downgraded_at is not None:
                    channel.downgraded_at, restored = None, True
                continue
            channel.failure_streak += 1
            if channel.downgraded_at is None and channel.failure_streak >= threshold:
                channel.downgraded_at, downgraded = now, o.error
            after[id(o)] = NotificationChannel(pk=channel.pk, tenant_id=channel.tenant_id,
                                               failure_streak=channel.failure_streak,
                                               downgraded_at=channel.downgraded_at)
        if (channel.failure_streak, channel.downgraded_at) == before:
            continue
        channel.save(update_fields=["failure_streak", "downgraded_at", "updated_at"])
        if restored and channel.downgraded_at is None:
            audit("channel.restored", target=channel, tenant=channel.tenant_id, data={"name": channel.name})
        if downgraded is not None and channel.downgraded_at is not None:
            audit("channel.downgraded", target=channel, tenant=channel.tenant_id,
                  data={"name": channel.name, "failure_streak": channel.failure_streak,
                        "error": downgraded.message[:300]})
    return after


def _failed(d: Delivery, outcome: Outcome, number: int, now: datetime,
            destination: WebhookEndpoint | NotificationChannel | None,
            downgraded: list[Delivery], *, moved: bool = False) -> tuple[str, dict | None]:
    """The failure policy for one delivery; returns (new state or "" if the claim was lost, the
    detail to report for the alert's state or None). ``destination`` is the endpoint or channel as
    it stood after this failure (a downgraded one sends the alert to fallback at once). A row
    downgraded now joins ``downgraded``, whose fallbacks the batch writes together. ``moved``: sent
    to a URL the endpoint has since left, so retried at the new one whatever the old one answered
    (its 410 or Retry-After is not the new receiver's)."""
    err = outcome.error
    final = err.permanent and not moved
    next_at = None
    if not final:
        next_at = backoff.next_attempt_at(number, now, retry_after=None if moved else err.retry_after,
                                          schedule=retry_schedule(d))
        max_age = timedelta(seconds=settings.DELIVERY_MAX_AGE_SECONDS)
        # expires_at - max_age: the retry window's start (creation, or the last manual retry).
        final = backoff.gives_up(number, d.expires_at - max_age, next_at, max_age)
    threshold = settings.DELIVERY_DOWNGRADE_AFTER_FAILURES
    routed = d.channel == Channel.WEBHOOK or (d.notification_channel_id is not None and d.source_id is None)
    downgrade = (routed and d.event_type in NOTIFY_EVENTS and d.alert_id is not None and d.downgraded_at is None
                 and (final or number >= threshold or bool(destination and destination.downgraded_at)))
    downgraded_at = now if downgrade else d.downgraded_at
    if final:
        new_state = DeliveryState.FAILED
    else:
        new_state = DeliveryState.DOWNGRADED if downgraded_at else DeliveryState.PENDING
    if not final and _behind_breaker(destination):
        next_at = None  # parked again: the breaker's next probe is another row (``breaker``)
    fields = dict(state=new_state, attempts=number, next_attempt_at=None if final else next_at, claim_token="",
                  last_error=err.message[:2000], last_status_code=err.status_code, downgraded_at=downgraded_at)
    if final:
        fields["finished_at"] = now
    if not _held(d).update(**fields):
        return "", None
    d.state, d.downgraded_at = new_state, downgraded_at
    if downgrade:
        downgraded.append(d)
    if final or downgrade:
        return new_state, {"channel": d.channel, "attempt": number, "status_code": err.status_code,
                           "error": err.message[:300]}
    return new_state, None


def _behind_breaker(destination: WebhookEndpoint | NotificationChannel | None) -> bool:
    return isinstance(destination, WebhookEndpoint) and destination.enabled and destination.downgraded_at is not None


def send_fallbacks(downgraded: list[Delivery], now: datetime) -> None:
    """The policies' fallback channels, or email + SMS to the tenants' contacts, with what each failing
    destination should have carried (rendered from what the row froze): one write for the batch."""
    by_what: dict[str, list] = {}
    for d in downgraded:
        by_what.setdefault(outbox.what_failed(d), []).append((d, outbox.notification_of(d)))
    for what, pairs in by_what.items():
        rows = outbox.create_fallbacks_for_many(pairs, now=now, reason=f"your {what} did not accept this alert")
        outbox.ring(r.pk for r in rows)


def _log(outcome: Outcome, number: int, new_state: str) -> None:
    d = outcome.delivery
    extra = {"alert_id": d.alert_id, "tenant_id": d.tenant_id, "plugin_id": d.plugin_id, "attempt": number,
             "channel": d.channel, "status": outcome.status_code, "latency_ms": outcome.latency_ms,
             "delivery_id": d.pk, "msg_id": d.msg_id, "state": new_state or "claim-lost"}
    if outcome.ok:
        logger.info("delivery attempt succeeded", extra=extra)
    else:
        logger.warning("delivery attempt failed: %s", outcome.error.message[:300], extra=extra)
