"""The ping's common case: one UPDATE of an UP heartbeat (DESIGN 8: vendor SQL in one module,
each operation with its portable ORM twin; both tested).

A ping of a heartbeat that is UP only moves ``last_seen_at`` / ``next_due_at`` (and any setting
it names), so it needs neither a lock nor a read first. PostgreSQL does it in one
``UPDATE ... RETURNING``; the twin (SQLite) reads under the row lock and saves. Neither matches
a DOWN or missing heartbeat: the caller's slow path creates or recovers those.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction

from ..models import Heartbeat, HeartbeatState


@dataclass(frozen=True)
class Pinged:
    id: int
    timeout_seconds: int
    grace_seconds: int
    severity: str
    next_due_at: datetime


_UPDATE_UP = """
UPDATE ingest_heartbeat SET
    last_seen_at = %(now)s,
    timeout_seconds = COALESCE(%(timeout)s, timeout_seconds),
    grace_seconds = COALESCE(%(grace)s, grace_seconds),
    severity = COALESCE(%(severity)s, severity),
    plugin_id = COALESCE(%(plugin_id)s, plugin_id),
    next_due_at = %(now)s + make_interval(secs => COALESCE(%(timeout)s, timeout_seconds)
                                                  + COALESCE(%(grace)s, grace_seconds))
WHERE tenant_id = %(tenant_id)s AND name = %(name)s AND state = 'up'
RETURNING id, timeout_seconds, grace_seconds, severity, next_due_at
"""


def ping_up(*, tenant_id: int, name: str, now: datetime, timeout: int | None, grace: int | None,
            severity: str | None, plugin_id: int | None) -> Pinged | None:
    """Record a ping of the UP heartbeat (tenant, name); None when there is no UP one."""
    args = {"tenant_id": tenant_id, "name": name, "now": now, "timeout": timeout, "grace": grace,
            "severity": severity, "plugin_id": plugin_id}
    if connection.vendor == "postgresql":
        return ping_up_postgresql(**args)
    return ping_up_portable(**args)


def ping_up_postgresql(**args) -> Pinged | None:
    with connection.cursor() as cursor:
        cursor.execute(_UPDATE_UP, args)
        row = cursor.fetchone()
    return Pinged(*row) if row else None


def ping_up_portable(*, tenant_id: int, name: str, now: datetime, timeout: int | None, grace: int | None,
                     severity: str | None, plugin_id: int | None) -> Pinged | None:
    with transaction.atomic():
        hb = (Heartbeat.objects.select_for_update()
              .filter(tenant_id=tenant_id, name=name, state=HeartbeatState.UP).first())
        if hb is None:
            return None
        hb.timeout_seconds = timeout if timeout is not None else hb.timeout_seconds
        hb.grace_seconds = grace if grace is not None else hb.grace_seconds
        hb.severity = severity or hb.severity
        hb.plugin_id = plugin_id or hb.plugin_id
        hb.last_seen_at = now
        hb.next_due_at = now + timedelta(seconds=hb.timeout_seconds + hb.grace_seconds)
        hb.save(update_fields=["timeout_seconds", "grace_seconds", "severity", "plugin_id", "last_seen_at",
                               "next_due_at"])
    return Pinged(hb.pk, hb.timeout_seconds, hb.grace_seconds, hb.severity, hb.next_due_at)
