"""The circuit breaker of a downgraded webhook endpoint, run by the sweeper.

While an endpoint is downgraded (DELIVERY_DOWNGRADE_AFTER_FAILURES consecutive failures), its rows
are not all tried: each would hold a send thread for its whole timeout when the receiver is silent,
and the rows no thread was free for were put back and claimed again every 2 s for as long as the
backlog lasted (bench/storm.py --blackhole). Instead:

* ``probes``: the sweeper sends it its oldest due rows, DELIVERY_DOWNGRADED_IN_FLIGHT at a time
  counting its sends in flight (half-open); a failed probe is rescheduled on the retry schedule;
* ``upkeep``: its notifying rows still PENDING (failed before the downgrade, or put back unsent)
  are downgraded at once, their fallback sent, as a new alert's would be; its rows that waited past
  their ``expires_at`` end FAILED (the endpoint failed every probe meanwhile), so an abandoned
  endpoint's backlog stays bounded by DELIVERY_MAX_AGE_SECONDS;
* ``release``: the success that restores it rings its due rows (``recording``).

New rows of a downgraded endpoint are neither sent by the detect task nor rung (``outbox``).
"""
from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Case, Count, F, TextField, Value, When
from django.db.models.functions import Concat

from apps.core.vocabulary import NOTIFY_EVENTS

from . import feedback, outbox
from .feedback import DeliveryReport
from .models import DUE_STATES, Delivery, DeliveryState, WebhookEndpoint

logger = logging.getLogger("apps.delivery")

# Rows per sweep that ``upkeep`` downgrades or expires, and that a restore rings; more wait for the
# next sweep.
CHUNK = 500


def downgraded_endpoints() -> list[int]:
    """The enabled downgraded endpoints (a disabled one's rows fail at their next claim)."""
    return list(WebhookEndpoint.objects.filter(downgraded_at__isnull=False, enabled=True)
                .order_by("pk").values_list("pk", flat=True))


def probes(endpoint_ids: list[int], now: datetime) -> list[int]:
    """The due rows the sweeper may send to these downgraded endpoints now: the oldest, up to
    DELIVERY_DOWNGRADED_IN_FLIGHT per endpoint counting its sends in flight."""
    if not endpoint_ids:
        return []
    in_flight = dict(Delivery.objects.filter(endpoint_id__in=endpoint_ids, state=DeliveryState.SENDING)
                     .order_by().values("endpoint_id").annotate(n=Count("pk")).values_list("endpoint_id", "n"))
    out: list[int] = []
    for endpoint_id in endpoint_ids:
        room = settings.DELIVERY_DOWNGRADED_IN_FLIGHT - in_flight.get(endpoint_id, 0)
        if room > 0:
            out += (Delivery.objects.filter(endpoint_id=endpoint_id, state__in=DUE_STATES, next_attempt_at__lte=now)
                    .order_by("next_attempt_at").values_list("pk", flat=True)[:room])
    return out


GAVE_UP = "gave up: its endpoint stayed downgraded past the delivery's max age"


def upkeep(endpoint_ids: list[int], now: datetime) -> dict[str, int]:
    """Downgrade these endpoints' notifying rows that are still PENDING (their fallback sent) and
    fail their rows that waited past ``expires_at`` (downgraded first, if they never were, so the
    alert is reached: the rule of ``recording._failed``); one transaction, one report for the alerts.

    Locks the endpoints that are still downgraded (a recording may have restored one meanwhile),
    in pk order and in the mode recording takes, then their rows, skipping the rows a claim holds:
    the order recording uses, so the two cannot deadlock."""
    if not endpoint_ids:
        return {"downgraded": 0, "expired": 0}
    from .recording import send_fallbacks  # recording imports this module

    with transaction.atomic():
        still = list(WebhookEndpoint.objects.select_for_update(no_key=True)
                     .filter(pk__in=endpoint_ids, downgraded_at__isnull=False, enabled=True)
                     .order_by("pk").values_list("pk", flat=True))
        waiting = (Delivery.objects.filter(endpoint_id__in=still, state__in=DUE_STATES)
                   .select_for_update(no_key=True, skip_locked=True).order_by("next_attempt_at"))
        expired = list(waiting.filter(expires_at__lte=now)[:CHUNK])
        expired_ids = {d.pk for d in expired}
        late = [d for d in expired if _undowngraded(d)] + [
            d for d in waiting.filter(state=DeliveryState.PENDING, event_type__in=NOTIFY_EVENTS,
                                      alert__isnull=False, downgraded_at__isnull=True)[:CHUNK]
            if d.pk not in expired_ids]
        if late:
            Delivery.objects.filter(pk__in=[d.pk for d in late], state__in=DUE_STATES).update(
                state=DeliveryState.DOWNGRADED, downgraded_at=now)
            for d in late:
                d.state, d.downgraded_at = DeliveryState.DOWNGRADED, now
            send_fallbacks(late, now)
        if expired:
            Delivery.objects.filter(pk__in=list(expired_ids), state__in=DUE_STATES).update(
                state=DeliveryState.FAILED, finished_at=now, next_attempt_at=None, claim_token="",
                last_error=Case(When(last_error="", then=Value(GAVE_UP)),
                                default=Concat(Value(GAVE_UP + "; the last error: "), F("last_error"),
                                               output_field=TextField()), output_field=TextField()))
        reports = {d.alert_id: DeliveryReport(d.alert_id, {
            "delivery_id": d.pk, "endpoint_id": d.endpoint_id, "event_type": d.event_type, "channel": d.channel,
            "error": "expired behind a downgraded endpoint" if d.pk in expired_ids else "endpoint downgraded"})
            for d in late + expired if d.alert_id and d.event_type in NOTIFY_EVENTS}
        feedback.report(list(reports.values()))
    if late or expired:
        logger.warning("downgraded endpoints: waiting deliveries downgraded or expired",
                       extra={"downgraded": len(late), "expired": len(expired), "endpoints": still[:20]})
    return {"downgraded": len(late), "expired": len(expired)}


def _undowngraded(d: Delivery) -> bool:
    """A notifying row whose fallback was never sent."""
    return d.event_type in NOTIFY_EVENTS and d.alert_id is not None and d.downgraded_at is None


def release(endpoint: WebhookEndpoint, now: datetime) -> None:
    """Ring the due rows that waited behind the restored ``endpoint``'s breaker, the oldest first, on
    commit; the sweeper takes any beyond CHUNK."""
    outbox.ring(Delivery.objects.filter(endpoint_id=endpoint.pk, state__in=DUE_STATES, next_attempt_at__lte=now)
                .order_by("next_attempt_at").values_list("pk", flat=True)[:CHUNK])
