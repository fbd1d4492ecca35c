"""The circuit breaker of a downgraded webhook endpoint, run by the sweeper.

While an endpoint is downgraded (DELIVERY_DOWNGRADE_AFTER_FAILURES consecutive failures), its rows
are not all tried: each would hold a send thread for its whole timeout when the receiver is silent,
and the rows no thread was free for were put back and claimed again every 2 s for as long as the
backlog lasted (bench/storm.py --blackhole). Instead its rows are **parked**: due state, no
``next_attempt_at``. The sweeper's due scan (``delivery_due``, ``next_attempt_at <= now``) never
visits them, so a dead endpoint's backlog (up to DELIVERY_MAX_AGE_SECONDS of alerts) costs the other
tenants' sweeps nothing (bench/breaker.py). Rows are parked as they are written (``outbox``), when a
send to the downgraded endpoint fails (``recording``) and by ``hold``.

* ``probes``: the sweeper sends it parked rows, DELIVERY_DOWNGRADED_IN_FLIGHT at a time counting its
  sends in flight (half-open), the least tried first, then the oldest: round robin, so one row the
  receiver rejects cannot keep the breaker open. The downgrade and each failed probe set the
  endpoint's ``next_probe_at`` (the retry schedule's next step capped at
  DELIVERY_PROBE_MAX_INTERVAL_SECONDS, or a longer Retry-After, which a send that was in flight at
  the downgrade can also set), and the failed row waits parked again;
* ``hold``: its rows not parked yet (failed before the downgrade, or put back unsent) are parked,
  the notifying ones still PENDING downgraded first and their fallback sent, as a new alert's would
  be; rows that waited past their ``expires_at`` end FAILED (the endpoint failed every probe
  meanwhile), so an abandoned endpoint's backlog stays bounded by DELIVERY_MAX_AGE_SECONDS;
* ``drain``: rows parked behind an endpoint that is no longer downgraded (restored, disabled,
  deleted) are made due, CHUNK per endpoint at a time, so they reach their end without crowding out
  other tenants' retries;
* ``release``: the success that restores it makes due and rings its oldest waiting rows.

New rows of a downgraded endpoint are neither sent by the detect task nor rung (``outbox``).
"""
from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, Count, Exists, F, OuterRef, Q, TextField, Value, When
from django.db.models.functions import Concat

from apps.core.vocabulary import NOTIFY_EVENTS

from . import fastpath, feedback, outbox
from .feedback import DeliveryReport
from .models import DUE_STATES, Delivery, DeliveryState, WebhookEndpoint

logger = logging.getLogger("apps.delivery")

# Rows per endpoint and sweep that ``hold`` parks and expires and that ``drain`` makes due, and that a
# restore rings; more wait for the next sweep.
CHUNK = 500


# Parked rows, the oldest first, in delivery_endpoint_due's order: PostgreSQL does not take
# "next_attempt_at IS NULL" as fixing that column, so order_by("expires_at") alone would sort every
# parked row of the endpoint (281 ms at 500,000) instead of reading the index in order.
_BY_AGE = ("endpoint_id", "next_attempt_at", "expires_at")


def parked_q() -> Q:
    return Q(state__in=DUE_STATES, next_attempt_at__isnull=True)


def parked():
    """The parked rows (delivery_probe and delivery_endpoint_due serve them per endpoint)."""
    return Delivery.objects.filter(parked_q())


def downgraded_endpoints() -> list[int]:
    """The enabled downgraded endpoints (a disabled one's rows fail at their next claim)."""
    return list(WebhookEndpoint.objects.filter(downgraded_at__isnull=False, enabled=True)
                .order_by("pk").values_list("pk", flat=True))


def needing_hold(endpoint_ids: list[int], now: datetime) -> list[int]:
    """The endpoints among ``endpoint_ids`` that ``hold`` has work for: with rows not parked yet, or
    parked rows past their ``expires_at``. One query, two probes of delivery_endpoint_due per
    endpoint, where a ``hold`` is a transaction of five statements whether or not it finds work: the
    sweep took 0.9 s with 100 dead endpoints and 8.5 s with 1,000, all of it spent finding nothing
    to do (bench/breaker.py --dead)."""
    if not endpoint_ids:
        return []
    rows = Delivery.objects.filter(endpoint_id=OuterRef("pk"), state__in=DUE_STATES)
    loose = Exists(rows.filter(next_attempt_at__isnull=False))
    expired = Exists(rows.filter(next_attempt_at__isnull=True, expires_at__lte=now))
    return list(WebhookEndpoint.objects.filter(pk__in=endpoint_ids).filter(loose | expired)
                .order_by("pk").values_list("pk", flat=True))


def probes(endpoint_ids: list[int], now: datetime) -> list[int]:
    """The parked rows the sweeper may send to these downgraded endpoints now (those whose
    ``next_probe_at`` has come): the least tried, then the oldest, up to DELIVERY_DOWNGRADED_IN_FLIGHT
    per endpoint counting its sends in flight. Runs in the transaction that claims them.

    The endpoints are locked (a recording locks them too, then parks its failed probe and paces the
    next: it cannot commit between the pacing read here and the in-flight count), skipping those a
    recording holds now: they are probed at a later sweep; waiting could deadlock with a recording
    that holds one of them and a row of another endpoint this sweep claims."""
    # The downgrade and each failed probe set when the next may go (``recording._pace_probes``).
    endpoint_ids = list(WebhookEndpoint.objects.select_for_update(no_key=True, skip_locked=True)
                        .filter(pk__in=endpoint_ids).exclude(next_probe_at__gt=now)
                        .order_by("pk").values_list("pk", flat=True)) if endpoint_ids else []
    if not endpoint_ids:
        return []
    in_flight = dict(Delivery.objects.filter(endpoint_id__in=endpoint_ids, state=DeliveryState.SENDING)
                     .order_by().values("endpoint_id").annotate(n=Count("pk")).values_list("endpoint_id", "n"))
    rooms = {e: settings.DELIVERY_DOWNGRADED_IN_FLIGHT - in_flight.get(e, 0) for e in endpoint_ids}
    # Not the expired ones: the upkeep after the claim ends them.
    return fastpath.parked_probes({e: room for e, room in rooms.items() if room > 0}, now)


GAVE_UP = "gave up: its endpoint stayed downgraded past the delivery's max age"


def hold(endpoint_ids: list[int], now: datetime) -> dict[str, int]:
    """Park these downgraded endpoints' rows that are not parked yet, after downgrading the notifying
    ones still PENDING (their fallback sent), and fail their rows that waited past ``expires_at``
    (downgraded first, if they never were, so the alert is reached: the rule of
    ``recording._failed``); one transaction, one report for the alerts (the sweep calls it once per
    endpoint, so one bad row holds up its own endpoint only).

    Locks the endpoints that are still downgraded (a recording may have restored one meanwhile),
    in pk order and in the mode recording takes, then their rows, skipping the rows a claim holds:
    the order recording uses, so the two cannot deadlock."""
    from .recording import send_fallbacks  # recording imports this module

    with transaction.atomic():
        still = list(WebhookEndpoint.objects.select_for_update(no_key=True)
                     .filter(pk__in=endpoint_ids, downgraded_at__isnull=False, enabled=True)
                     .order_by("pk").values_list("pk", flat=True))
        rows = (Delivery.objects.filter(endpoint_id__in=still, state__in=DUE_STATES)
                .select_for_update(no_key=True, skip_locked=True))
        # Not parked yet (failed before the downgrade, put back unsent, released from a lost lease);
        # the expired first, so a full chunk of others cannot keep one from its fallback.
        loose = rows.filter(next_attempt_at__isnull=False)
        expired = list(loose.filter(expires_at__lte=now).order_by("expires_at")[:CHUNK])
        expired += rows.filter(next_attempt_at__isnull=True, expires_at__lte=now).order_by(*_BY_AGE)[:CHUNK]
        expired_ids = {d.pk for d in expired}
        to_park = [d for d in loose.order_by("next_attempt_at")[:CHUNK] if d.pk not in expired_ids]
        late = [d for d in expired + to_park if _undowngraded(d)]
        if late:
            Delivery.objects.filter(pk__in=[d.pk for d in late], state__in=DUE_STATES).update(
                state=DeliveryState.DOWNGRADED, downgraded_at=now)
            for d in late:
                d.state, d.downgraded_at = DeliveryState.DOWNGRADED, now
            send_fallbacks(late, now)
        if to_park:
            Delivery.objects.filter(pk__in=[d.pk for d in to_park], state__in=DUE_STATES).update(next_attempt_at=None)
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
    return {"parked": len(to_park), "downgraded": len(late), "expired": len(expired)}


def _undowngraded(d: Delivery) -> bool:
    """A notifying row whose fallback was never sent."""
    return d.event_type in NOTIFY_EVENTS and d.alert_id is not None and d.downgraded_at is None


def drain(now: datetime) -> int:
    """Make due and ring the oldest CHUNK rows parked behind each endpoint that is no longer
    downgraded (restored, disabled or deleted), once the rows made due before have been claimed: a
    restored endpoint gets its backlog chunk by chunk, queued with everyone else's work, and the rows
    of a disabled or deleted one reach their end (FAILED at the claim). Returns the rows made due.

    The downgraded endpoints are read here, after the parked ones, not taken from the sweep's start:
    an endpoint downgraded during the sweep has its rows parked by then, and a list from before
    would let them all out to it."""
    candidates = _parked_endpoints()
    if not candidates:
        return 0
    held = set(downgraded_endpoints())
    made_due = 0
    for endpoint_id in candidates:
        if endpoint_id in held:
            continue
        mine = Delivery.objects.filter(endpoint_id=endpoint_id) if endpoint_id else Delivery.objects.filter(
            endpoint__isnull=True, channel="webhook")
        if mine.filter(state__in=DUE_STATES, next_attempt_at__lte=now).exists():
            continue  # due rows of it still wait for the sweeper (the last chunk, or a retry)
        made_due += _unpark(mine, now)
    return made_due


def _unpark(rows, now: datetime, limit: int | None = None, also_ring: list[int] = ()) -> int:
    """Make the oldest ``limit`` (CHUNK) parked ``rows`` due and ring them (with ``also_ring``): the
    deliver queue takes them in turn with everyone else's work. Not due in the past for the sweeper
    instead: its oldest-first claim of at most 500 would take a chunk ahead of the retries due
    meanwhile, at every sweep."""
    with transaction.atomic():
        # Locked, skipping rows a concurrent release or sweep holds: each row is rung once.
        ids = list(rows.filter(state__in=DUE_STATES, next_attempt_at__isnull=True).order_by(*_BY_AGE)
                   .select_for_update(no_key=True, skip_locked=True)
                   .values_list("pk", flat=True)[:CHUNK if limit is None else limit])
        parked().filter(pk__in=ids).update(next_attempt_at=now)
        outbox.ring([*also_ring, *ids])
    return len(ids)


def _parked_endpoints() -> list[int | None]:
    """The endpoints with parked rows (None: rows whose endpoint was deleted), by a loose index scan
    of delivery_probe: one probe per endpoint found, however many rows each has parked."""
    table = connection.ops.quote_name(Delivery._meta.db_table)
    due = ", ".join(f"'{s}'" for s in DUE_STATES)
    parked_sql = f"state IN ({due}) AND next_attempt_at IS NULL"
    with connection.cursor() as cursor:
        cursor.execute(f"""
            WITH RECURSIVE e(id) AS (
                SELECT (SELECT endpoint_id FROM {table} WHERE {parked_sql} AND endpoint_id IS NOT NULL
                        ORDER BY endpoint_id LIMIT 1)
                UNION ALL
                SELECT (SELECT d.endpoint_id FROM {table} d WHERE {parked_sql} AND d.endpoint_id > e.id
                        ORDER BY d.endpoint_id LIMIT 1)
                FROM e WHERE e.id IS NOT NULL
            )
            SELECT id FROM e WHERE id IS NOT NULL""")
        found: list[int | None] = [row[0] for row in cursor.fetchall()]
    if parked().filter(endpoint__isnull=True, channel="webhook").exists():
        found.append(None)
    return found


def release(endpoint: WebhookEndpoint, now: datetime) -> None:
    """Ring the rows that waited behind the restored ``endpoint``'s breaker, on commit: its due rows
    and its oldest parked ones (made due), CHUNK in all; ``drain`` makes the rest due sweep by sweep."""
    mine = Delivery.objects.filter(endpoint_id=endpoint.pk, state__in=DUE_STATES)
    due = list(mine.filter(next_attempt_at__lte=now).order_by("next_attempt_at").values_list("pk", flat=True)[:CHUNK])
    _unpark(mine, now, limit=CHUNK - len(due), also_ring=due)
