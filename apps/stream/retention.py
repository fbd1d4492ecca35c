"""Retention of stream events: rows older than STREAM_RETENTION_DAYS (7) are purged by
apps.ops.retention. A client resuming from an id older than that gets a ``stream.reset``."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet

from .models import StreamEvent


def expired(now: datetime) -> tuple[datetime, QuerySet, Callable[[list[int]], int]]:
    """(cutoff, the rows past it, a chunk deleter re-checking the cutoff) for apps.ops.retention."""
    cutoff = now - timedelta(days=settings.STREAM_RETENTION_DAYS)

    def delete(ids: list[int]) -> int:
        return StreamEvent.objects.filter(pk__in=ids, created_at__lt=cutoff).delete()[0]

    return cutoff, StreamEvent.objects.filter(created_at__lt=cutoff), delete
