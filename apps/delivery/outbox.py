"""The outbox: delivery rows written in the transaction of the change they announce.

``notify`` runs inside the alert service's transaction (the alerts app calls it with the change's
``Notification``), so an alert change and its deliveries commit together or not at all. The broker only rings a
doorbell on commit; if that message is lost, the sweeper finds the due rows anyway.
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from apps.core import clock
from apps.core.vocabulary import NOTIFY_EVENTS, severity_rank
from apps.tenants.models import FallbackContact

from . import messages
from .feedback import DeliveryReport
from .models import Channel, Delivery, DeliveryState, WebhookEndpoint
from .notifications import Notification

logger = logging.getLogger("apps.delivery")


def new_msg_id() -> str:
    """A webhook-id: unique, stable for the life of the delivery (receivers dedupe on it)."""
    return f"msg_{uuid.uuid4().hex}"


def subscribed(endpoint: WebhookEndpoint, event_type: str, severity: str) -> bool:
    """Does ``endpoint`` want ``event_type`` for an alert of ``severity``?"""
    return endpoint.enabled and event_type in (endpoint.event_types or []) and severity_rank(severity) >= severity_rank(
        endpoint.min_severity)


def expires(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.DELIVERY_MAX_AGE_SECONDS)


def batch_size() -> int:
    """Deliveries per deliver task (DELIVERY_BATCH_SIZE): a batch is claimed, sent and recorded together."""
    return max(1, int(getattr(settings, "DELIVERY_BATCH_SIZE", 25)))


def _enqueue(ids: list[int]) -> None:
    from .tasks import deliver_attempt, deliver_batch

    size = batch_size()
    try:
        if len(ids) == 1:
            deliver_attempt.delay(ids[0])
            return
        for i in range(0, len(ids), size):
            deliver_batch.delay(ids[i:i + size])
    except Exception:  # noqa: BLE001 - the doorbell is best effort by design
        logger.warning("could not enqueue deliveries; the sweeper will pick them up",
                       extra={"delivery_ids": ids[:20]}, exc_info=True)


class _Doorbell:
    """The ids rung in one transaction: enqueued together (in DELIVERY_BATCH_SIZE chunks) on commit."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.done = False

    def __call__(self) -> None:
        self.done = True
        _enqueue(self.ids)


def _pending_doorbell(connection) -> _Doorbell | None:
    """This transaction's doorbell, if its on_commit callback is still registered (a rolled-back
    savepoint or transaction discards callbacks without running them, so membership is the test)."""
    bell = getattr(connection, "_delivery_doorbell", None)
    if bell is None or bell.done:
        return None
    if any(entry[1] is bell for entry in connection.run_on_commit):
        return bell
    return None


def ring(ids: Iterable[int]) -> None:
    """Enqueue a first attempt for ``ids`` once the current transaction commits.

    All ids rung inside one transaction share one on_commit callback, which enqueues them as
    ``deliver.batch`` tasks of DELIVERY_BATCH_SIZE (so 100 alerts written in one transaction cost
    a few broker messages, not 100). Ids whose rows were rolled back with a savepoint may still be
    enqueued: the claim finds nothing and the task is a no-op. A broker failure is logged, not
    raised: the rows are due and the sweeper will send them.
    """
    ids = list(ids)
    if not ids:
        return
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        _enqueue(ids)
        return
    bell = _pending_doorbell(connection)
    if bell is None:
        bell = _Doorbell()
        connection._delivery_doorbell = bell
        transaction.on_commit(bell)
    bell.ids.extend(ids)


def _endpoints_by_tenant(tenant_ids: set[int], endpoint_ids: Iterable[int] | None) -> dict[int, list[WebhookEndpoint]]:
    """The enabled endpoints of these tenants (restricted to ``endpoint_ids`` when given), one query."""
    qs = WebhookEndpoint.objects.filter(tenant_id__in=tenant_ids, enabled=True).order_by("id")
    if endpoint_ids is not None:
        qs = qs.filter(pk__in=list(endpoint_ids))
    out: dict[int, list[WebhookEndpoint]] = {}
    for e in qs:
        out.setdefault(e.tenant_id, []).append(e)
    return out


def notify(notifications: Sequence[Notification], *,
           endpoint_ids: Iterable[int] | None = None) -> list[DeliveryReport]:
    """Write one webhook delivery per notification and enabled endpoint of its tenant subscribed to
    its event at its severity; ring the doorbell on commit. Returns one ``DeliveryReport`` per alert
    whose delivery state these rows decide (alert.triggered / alert.escalated with at least one
    endpoint): the caller records the state (PENDING, or DOWNGRADED at once when an endpoint is
    currently downgraded: that alert goes to fallback immediately).

    Must run inside the caller's transaction: the alert change and its deliveries commit together or
    not at all (the outbox). One endpoint query and one INSERT for the whole list. DB errors
    propagate and roll the change back with them. ``endpoint_ids`` restricts the endpoints
    (reconcile_alerts fills in missing deliveries with it).
    """
    if not notifications:
        return []
    endpoints = _endpoints_by_tenant({n.tenant_id for n in notifications}, endpoint_ids)
    now = clock.now()
    rows: list[Delivery] = []
    plan: list[tuple[Notification, list[WebhookEndpoint], list[Delivery]]] = []
    for n in notifications:
        targets = [e for e in endpoints.get(n.tenant_id, ()) if subscribed(e, n.event_type, n.severity)]
        if not targets:
            continue
        body = messages.webhook_body(n.event_type, n.payload_json, now)
        downgrade = n.event_type in NOTIFY_EVENTS
        mine = [
            Delivery(
                tenant_id=n.tenant_id, alert_id=n.alert_id, endpoint=e, channel=Channel.WEBHOOK,
                event_type=n.event_type, msg_id=new_msg_id(), body=body, plugin_id=n.plugin_id,
                state=DeliveryState.DOWNGRADED if downgrade and e.downgraded_at else DeliveryState.PENDING,
                downgraded_at=now if downgrade and e.downgraded_at else None,
                next_attempt_at=now, created_at=now, expires_at=expires(now),
            )
            for e in targets
        ]
        rows += mine
        plan.append((n, targets, mine))
    if not rows:
        return []
    Delivery.objects.bulk_create(rows)
    to_ring = [r.pk for r in rows]
    reports = []
    for n, targets, mine in plan:
        downgraded = [r for r in mine if r.downgraded_at]
        if downgraded:
            fallbacks = create_fallbacks(notification=n, source=downgraded[0], now=now,
                                         reason="your webhook endpoint is downgraded after repeated failures")
            to_ring += [f.pk for f in fallbacks]
        if n.event_type in NOTIFY_EVENTS:
            reports.append(DeliveryReport(n.alert_id, {"event_type": n.event_type,
                                                       "endpoints": [e.pk for e in targets],
                                                       "delivery_ids": [r.pk for r in mine]}))
    ring(to_ring)
    return reports


def create_fallbacks(*, notification: Notification, source: Delivery | None, now: datetime,
                     reason: str, channels: tuple[str, ...] = (Channel.EMAIL, Channel.SMS)) -> list[Delivery]:
    """Write one fallback delivery per channel that has active contacts for the notification's tenant.

    Returns the rows (possibly none: a tenant without contacts is logged, not an error). The caller
    rings the doorbell. Bodies are rendered now from the notification's payload and frozen.
    """
    n = notification
    contacts: dict[str, list[str]] = {}
    for kind, value in FallbackContact.objects.filter(tenant_id=n.tenant_id, active=True,
                                                       kind__in=channels).values_list("kind", "value"):
        contacts.setdefault(kind, []).append(value)
    rows = []
    payload = n.payload
    for channel in channels:
        if not contacts.get(channel):
            continue
        fields = (messages.alert_email(payload, reason=reason) if channel == Channel.EMAIL
                  else messages.alert_sms(payload))
        rows.append(Delivery(
            tenant_id=n.tenant_id, alert_id=n.alert_id, source=source, channel=channel,
            event_type=n.event_type, msg_id=new_msg_id(), body=messages.encode(fields),
            recipients=sorted(contacts[channel]), plugin_id=n.plugin_id, next_attempt_at=now,
            created_at=now, expires_at=expires(now),
        ))
    if not rows:
        logger.warning("no active fallback contact", extra={"alert_id": n.alert_id, "tenant_id": n.tenant_id,
                                                            "channel": ",".join(channels)})
        return []
    Delivery.objects.bulk_create(rows)
    return rows


def notification_of(delivery: Delivery) -> Notification:
    """The notification a webhook delivery was written for, from its frozen body (for its fallback)."""
    data = messages.decode(delivery.body)["data"]
    return Notification.build(event_type=delivery.event_type, alert_id=delivery.alert_id,
                              tenant_id=delivery.tenant_id, plugin_id=delivery.plugin_id,
                              severity=str(data.get("severity", "")), payload=data)


def create_notice(*, tenant_id: int, subject: str, text: str, event_type: str) -> Delivery | None:
    """Queue an email notice to the tenant's active email contacts (endpoint disabled/restored).

    Returns None when the tenant has no email contact. Rings the doorbell on commit.
    """
    emails = sorted(FallbackContact.objects.filter(tenant_id=tenant_id, active=True, kind=Channel.EMAIL)
                    .values_list("value", flat=True))
    if not emails:
        return None
    now = clock.now()
    row = Delivery.objects.create(
        tenant_id=tenant_id, channel=Channel.EMAIL, event_type=event_type, msg_id=new_msg_id(),
        body=messages.encode(messages.notice_email(subject, text)), recipients=emails,
        next_attempt_at=now, created_at=now, expires_at=expires(now),
    )
    ring([row.pk])
    return row
