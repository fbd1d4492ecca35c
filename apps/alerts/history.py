"""What every alert change leaves behind: a timeline line, an audit row and (maybe) an event.

Called inside the service's transaction, so history and the change commit together, and the
delivery outbox (a receiver of ``alert_event``) writes its rows in that same transaction.
"""
from __future__ import annotations

from typing import Any

from apps.audit.services import describe_actor, record
from apps.core import clock

from .models import Alert, TimelineEntry
from .signals import alert_event


def actor_label(actor: Any) -> str:
    """'alice', 'token:ci', or 'system' (None)."""
    return describe_actor(actor)[2][:200]


def _actor_user(actor: Any):
    # Only real users go in the FK; token principals and the system are labels.
    if actor is None or isinstance(actor, str) or getattr(actor, "token_id", None) is not None:
        return None
    return actor if getattr(actor, "_meta", None) is not None and getattr(actor, "is_authenticated", False) else None


def log_change(alert: Alert, *, kind: str, actor: Any, message: str = "", data: dict | None = None,
               audit_action: str | None = None) -> TimelineEntry:
    """Append a TimelineEntry and (unless audit_action is None) an AuditEvent ``alert.<...>``."""
    entry = TimelineEntry.objects.create(
        alert=alert, at=clock.now(), kind=kind, actor_label=actor_label(actor), actor_user=_actor_user(actor),
        message=message, data=data or {},
    )
    if audit_action:
        record(audit_action, actor=actor, target=alert, tenant=alert.tenant_id,
               data={"message": message, **(data or {})} if message else dict(data or {}))
    return entry


def emit(alert: Alert, event_type: str, data: dict) -> None:
    """Send ``alert_event`` unless the alert has notified nobody yet (created under a silence).

    Once tenants have heard of an alert they hear of every change; an alert born silenced stays
    quiet until it is unsuppressed (which then sends alert.triggered).
    """
    if alert.silence_id is not None:
        return
    alert_event.send(sender=Alert, alert=alert, event_type=event_type, data=data)
