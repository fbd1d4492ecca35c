"""The outbox: delivery rows written in the transaction of the change they announce.

``create_for_event`` runs inside the alert service's transaction (via the ``alert_event`` receiver),
so an alert change and its deliveries commit together or not at all. The broker only rings a
doorbell on commit; if that message is lost, the sweeper finds the due rows anyway.
"""
from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterable
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction

from apps.core import clock

from . import messages
from .models import NOTIFY_EVENTS, SEVERITIES, Channel, Delivery, DeliveryState, WebhookEndpoint
from .signals import delivery_state_changed

logger = logging.getLogger("apps.delivery")


def new_msg_id() -> str:
    """A webhook-id: unique, stable for the life of the delivery (receivers dedupe on it)."""
    return f"msg_{uuid.uuid4().hex}"


def _rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else 0


def subscribed(endpoint: WebhookEndpoint, event_type: str, severity: str) -> bool:
    """Does ``endpoint`` want ``event_type`` for an alert of ``severity``?"""
    return endpoint.enabled and event_type in (endpoint.event_types or []) and _rank(severity) >= _rank(
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


class _EndpointSnapshot(threading.local):
    tenants: dict[int, list[WebhookEndpoint]] | None = None


_snapshot = _EndpointSnapshot()


@contextmanager
def endpoint_snapshot():
    """Within this block, each tenant's enabled endpoints are read once (``create_for_event``).

    For a batch of state reports: their alert.updated events would otherwise look the endpoints up
    once per alert. Only for code that does not change endpoints inside the block.
    """
    outer = _snapshot.tenants
    if outer is None:
        _snapshot.tenants = {}
    try:
        yield
    finally:
        _snapshot.tenants = outer


def _enabled_endpoints(tenant_id: int) -> list[WebhookEndpoint]:
    cache = _snapshot.tenants
    if cache is None:
        return list(WebhookEndpoint.objects.filter(tenant_id=tenant_id, enabled=True))
    if tenant_id not in cache:
        cache[tenant_id] = list(WebhookEndpoint.objects.filter(tenant_id=tenant_id, enabled=True))
    return cache[tenant_id]


def create_for_event(*, alert: Any, event_type: str, data: dict | None = None,
                     endpoint_ids: Iterable[int] | None = None) -> list[Delivery]:
    """Write one webhook delivery per enabled endpoint of the alert's tenant subscribed to
    ``event_type`` at the alert's severity; ring the doorbell on commit.

    For alert.triggered/escalated also reports the alert's delivery state (PENDING, or DOWNGRADED
    at once when an endpoint is currently downgraded: that alert goes to fallback immediately).
    No subscribed endpoint: nothing is written and the alert's delivery state stays as it is.
    Must run inside the caller's transaction (raises nothing of its own; DB errors propagate and
    roll the alert change back with it, which is the point of the outbox). ``endpoint_ids``
    restricts the endpoints (reconcile_alerts fills in missing deliveries with it).
    """
    if endpoint_ids is not None:
        qs = WebhookEndpoint.objects.filter(tenant_id=alert.tenant_id, enabled=True, pk__in=list(endpoint_ids))
    else:
        qs = _enabled_endpoints(alert.tenant_id)
    endpoints = [e for e in qs if subscribed(e, event_type, alert.severity)]
    if not endpoints:
        return []
    now = clock.now()
    body = messages.webhook_body(event_type, messages.alert_data(alert, event_type), now)
    notify = event_type in NOTIFY_EVENTS
    rows = [
        Delivery(
            tenant_id=alert.tenant_id, alert_id=alert.pk, endpoint=e, channel=Channel.WEBHOOK,
            event_type=event_type, msg_id=new_msg_id(), body=body, plugin_id=alert.plugin_id,
            state=DeliveryState.DOWNGRADED if notify and e.downgraded_at else DeliveryState.PENDING,
            downgraded_at=now if notify and e.downgraded_at else None,
            next_attempt_at=now, created_at=now, expires_at=expires(now),
        )
        for e in endpoints
    ]
    Delivery.objects.bulk_create(rows)
    to_ring = [r.pk for r in rows]
    downgraded = [r for r in rows if r.downgraded_at]
    if downgraded:
        fallbacks = create_fallbacks(alert=alert, event_type=event_type, source=downgraded[0], now=now,
                                     reason="your webhook endpoint is downgraded after repeated failures")
        to_ring += [f.pk for f in fallbacks]
    ring(to_ring)
    if notify:
        state = DeliveryState.DOWNGRADED if downgraded else DeliveryState.PENDING
        delivery_state_changed.send(
            sender=Delivery, alert_id=alert.pk, state=str(state), alert=alert,
            detail={"event_type": event_type, "endpoints": [e.pk for e in endpoints],
                    "delivery_ids": [r.pk for r in rows]},
        )
    return rows


def create_fallbacks(*, alert: Any, event_type: str, source: Delivery | None, now: datetime,
                     reason: str, channels: tuple[str, ...] = (Channel.EMAIL, Channel.SMS)) -> list[Delivery]:
    """Write one fallback delivery per channel that has active contacts for the alert's tenant.

    Returns the rows (possibly none: a tenant without contacts is logged, not an error). The caller
    rings the doorbell. Bodies are rendered now and frozen like webhook bodies.
    """
    from apps.tenants.models import FallbackContact

    contacts: dict[str, list[str]] = {}
    for kind, value in FallbackContact.objects.filter(tenant_id=alert.tenant_id, active=True,
                                                       kind__in=channels).values_list("kind", "value"):
        contacts.setdefault(kind, []).append(value)
    rows = []
    for channel in channels:
        if not contacts.get(channel):
            continue
        fields = (messages.alert_email(alert, event_type, reason=reason) if channel == Channel.EMAIL
                  else messages.alert_sms(alert, event_type))
        rows.append(Delivery(
            tenant_id=alert.tenant_id, alert_id=alert.pk, source=source, channel=channel,
            event_type=event_type, msg_id=new_msg_id(), body=messages.encode(fields),
            recipients=sorted(contacts[channel]), plugin_id=alert.plugin_id, next_attempt_at=now,
            created_at=now, expires_at=expires(now),
        ))
    if not rows:
        logger.warning("no active fallback contact", extra={"alert_id": alert.pk, "tenant_id": alert.tenant_id,
                                                            "channel": ",".join(channels)})
        return []
    Delivery.objects.bulk_create(rows)
    return rows


def create_notice(*, tenant_id: int, subject: str, text: str, event_type: str) -> Delivery | None:
    """Queue an email notice to the tenant's active email contacts (endpoint disabled/restored).

    Returns None when the tenant has no email contact. Rings the doorbell on commit.
    """
    from apps.tenants.models import FallbackContact

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
