"""Heartbeat reads for the API and the console."""
from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import QuerySet

from ..models import Heartbeat, HeartbeatState


def heartbeats(*, tenant_ids: list[int] | None) -> QuerySet[Heartbeat]:
    """Heartbeats of ``tenant_ids`` (None: every tenant), with tenant and plugin loaded."""
    qs = Heartbeat.objects.select_related("tenant", "plugin").order_by("tenant__slug", "name")
    return qs if tenant_ids is None else qs.filter(tenant_id__in=tenant_ids)


def display_state(hb: Heartbeat, now: datetime) -> str:
    """up / late (past the timeout, still within the grace) / down (the sweep's verdict)."""
    if hb.state == HeartbeatState.DOWN:
        return HeartbeatState.DOWN
    if now >= hb.last_seen_at + timedelta(seconds=hb.timeout_seconds):
        return HeartbeatState.LATE
    return HeartbeatState.UP


def as_dict(hb: Heartbeat, now: datetime) -> dict:
    return {"name": hb.name, "tenant": hb.tenant.slug, "state": display_state(hb, now),
            "timeout_seconds": hb.timeout_seconds, "grace_seconds": hb.grace_seconds, "severity": hb.severity,
            "plugin": hb.plugin.slug if hb.plugin else None, "last_seen_at": hb.last_seen_at.isoformat(),
            "next_due_at": hb.next_due_at.isoformat(), "alert_id": hb.alert_id,
            "created_at": hb.created_at.isoformat()}
