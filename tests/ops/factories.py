"""Rows for the operations tests, written directly (the figures are read from rows, so rows are the input)."""
from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from apps.alerts.models import Alert, TimelineEntry
from apps.core import clock
from apps.delivery.models import Delivery, DeliveryAttempt
from apps.ingest.models import EventRecord, IngestBatch

_seq = itertools.count(1)


def make_alert(tenant, *, created_at: datetime | None = None, latency: float | None = None,
               severity: str = "critical", **fields) -> Alert:
    """An alert created at ``created_at``; ``latency`` seconds after its source log line arrived."""
    at = created_at or clock.now()
    return Alert.objects.create(
        tenant=tenant, fingerprint=f"ops-{next(_seq)}", severity=severity, title="burst", first_seen=at,
        last_seen=at, created_at=at, updated_at=at,
        source_received_at=at - timedelta(seconds=latency) if latency is not None else None, **fields)


def make_delivery(alert, *, channel: str = "webhook", event_type: str = "alert.triggered", state: str = "DELIVERED",
                  created_at: datetime | None = None, delivered_after: float | None = None,
                  downgraded_at: datetime | None = None, attempts: list[bool] = (), **fields) -> Delivery:
    """A delivery with one attempt row per entry of ``attempts`` (True = success)."""
    at = created_at or clock.now()
    d = Delivery.objects.create(
        tenant_id=alert.tenant_id, alert=alert, channel=channel, event_type=event_type, msg_id=f"msg-{next(_seq)}",
        body=b"{}", state=state, attempts=len(attempts), created_at=at, expires_at=at + timedelta(days=1),
        delivered_at=alert.created_at + timedelta(seconds=delivered_after) if delivered_after is not None else None,
        downgraded_at=downgraded_at, **fields)
    for number, ok in enumerate(attempts, start=1):
        DeliveryAttempt.objects.create(delivery=d, number=number, channel=channel, started_at=at, success=ok,
                                       status_code=200 if ok else 500)
    return d


def timeline(alert, kind: str) -> TimelineEntry:
    return TimelineEntry.objects.create(alert=alert, at=clock.now(), kind=kind)


def make_batch(tenant, *, accepted: int, rejected: int = 0, status: str = "DONE", age: timedelta = timedelta(0),
               ) -> IngestBatch:
    return IngestBatch.objects.create(tenant=tenant, received_at=clock.now() - age, event_count=accepted,
                                      rejected_count=rejected, payload=b"", status=status)


def make_event(tenant, *, age: timedelta) -> EventRecord:
    at = clock.now() - age
    return EventRecord.objects.create(tenant=tenant, ts=at, level="ERROR", level_no=40, message="boom",
                                      received_at=at)
