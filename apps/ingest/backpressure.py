"""Shed load before falling over: when the detection backlog (events in PENDING batches) is over
``INGEST_MAX_PENDING_EVENTS``, intake answers 429 with Retry-After instead of piling up more.

A shipper that gets 429 keeps its buffer and resends later (syslog-ng, Vector and Fluent Bit all
do), so nothing is lost, while the workers catch up. The backlog is read at most once a second
per process: one small query over the partial index of pending batches.
"""
from __future__ import annotations

import time

from django.conf import settings
from django.db.models import Sum

from .models import BatchStatus, IngestBatch

REFRESH_SECONDS = 1.0
RETRY_AFTER_SECONDS = 5
_cache = {"at": 0.0, "pending": 0}


def pending_events() -> int:
    now = time.monotonic()
    if now - _cache["at"] >= REFRESH_SECONDS:
        total = IngestBatch.objects.filter(status=BatchStatus.PENDING).aggregate(n=Sum("event_count"))["n"]
        _cache.update(at=now, pending=total or 0)
    return _cache["pending"]


def retry_after_if_backlogged() -> int | None:
    """Seconds to wait when detection is too far behind, else None."""
    if pending_events() > settings.INGEST_MAX_PENDING_EVENTS:
        return RETRY_AFTER_SECONDS
    return None


def reset() -> None:
    """Forget the cached reading (tests)."""
    _cache.update(at=0.0, pending=0)
