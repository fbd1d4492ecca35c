"""Writing the stream: ``append`` / ``append_many`` in the caller's transaction, a Redis doorbell
on commit.

Contract: the rows commit or roll back with the change they describe (a rolled-back change is never
streamed). After commit the new ids are published to STREAM_REDIS_CHANNEL (``alertcenter:events``),
best effort: a lost publish (Redis down, a timeout) costs latency, not events, because the stream
process also polls the table (apps.stream.hub). Without REDIS_URL (embedded default) nothing is
published and the stream polls.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis
from django.conf import settings
from django.db import transaction

from apps.core import clock
from apps.core.fastpath import insert_rows

from .models import StreamEvent, StreamEventType

logger = logging.getLogger(__name__)

TYPES = frozenset(StreamEventType.values)

NewEvent = tuple[int, str, "int | None", dict[str, Any]]  # (tenant_id, type, alert_id, data)

_client: dict[str, redis.Redis] = {}


def append(tenant_id: int, type: str, alert_id: int | None, data: dict[str, Any]) -> int:
    """Append one event (see ``append_many``); its id."""
    return append_many([(tenant_id, type, alert_id, data)])[0]


def append_many(events: Sequence[NewEvent]) -> list[int]:
    """Insert the events (one INSERT) in the current transaction and publish their ids once it
    commits; the ids, in order. An unknown type raises ValueError before anything is written."""
    if not events:
        return []
    unknown = sorted({e[1] for e in events} - TYPES)
    if unknown:
        raise ValueError(f"unknown stream event type(s) {', '.join(unknown)}; known: {', '.join(sorted(TYPES))}")
    now = clock.now()
    ids = insert_rows(StreamEvent, ("tenant_id", "type", "alert_id", "data", "created_at"),
                      [(tenant_id, type_, alert_id, data, now) for tenant_id, type_, alert_id, data in events])
    transaction.on_commit(lambda: publish(ids))
    return ids


def publish(ids: Sequence[int]) -> bool:
    """Ring the stream processes: PUBLISH the ids on STREAM_REDIS_CHANNEL. Never raises (the change is
    already committed; the stream's poll catches up); returns whether Redis took it."""
    url = settings.REDIS_URL
    if not url or not ids:
        return False
    try:
        client = _client.get(url)
        if client is None:
            # Short timeouts: this runs after commit on request and worker threads.
            client = _client[url] = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        client.publish(settings.STREAM_REDIS_CHANNEL, ",".join(map(str, ids)))
        return True
    except redis.RedisError as exc:
        logger.warning("stream: publish failed, the stream's poll will catch up: %s", exc)
        return False
