"""``alert_payload(alert)``: the alert as tenants see it, in webhook bodies, emails and the API;
``notification_for``: that payload frozen into what delivery gets for one change."""
from __future__ import annotations

from datetime import datetime

from django.conf import settings

from apps.core.vocabulary import EVENT_ESCALATED
from apps.delivery.notifications import Notification

from .models import Alert

ESCALATED_PREFIX = "[ESCALATED]"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def console_url(alert_id: int) -> str:
    return f"{settings.CONSOLE_BASE_URL}/alerts/{alert_id}"


def alert_payload(alert: Alert, *, event_type: str | None = None, delivery_state: str | None = None) -> dict:
    """A JSON-ready dict. For ``alert.escalated`` the title carries the ``[ESCALATED]`` prefix
    (only in what is sent: the stored title never changes). ``delivery_state``: the state to tell
    instead of the stored one (a new alert's first notification, see ``history.emit_many``).

    Pass an alert loaded with ``select_related("tenant", "plugin", "assignee")`` to avoid queries.
    """
    title = f"{ESCALATED_PREFIX} {alert.title}" if event_type == EVENT_ESCALATED else alert.title
    return {
        "id": alert.pk,
        "tenant": alert.tenant.slug,
        "plugin": alert.plugin.slug if alert.plugin_id else None,
        "severity": alert.severity,
        "state": alert.state,
        "delivery_state": delivery_state or alert.delivery_state,
        "title": title,
        "summary": alert.summary,
        "recommended_action": alert.recommended_action,
        "rule": {"key": alert.rule_key, "version": alert.rule_version},
        "category": alert.category,
        "count": alert.count,
        "window_seconds": alert.window_seconds,
        "first_seen": _iso(alert.first_seen),
        "last_seen": _iso(alert.last_seen),
        "trace_ids": list(alert.trace_ids or []),
        "samples": list(alert.samples or []),
        "labels": dict(alert.labels or {}),
        "source": alert.source,
        "annotations": dict(alert.annotations or {}),
        "value": alert.value,
        "threshold": alert.threshold,
        "baseline": dict(alert.baseline or {}),
        "ticket": {"key": alert.ticket_key, "url": alert.ticket_url or None} if alert.ticket_key else None,
        "escalation_level": alert.escalation_level,
        "assignee": alert.assignee.get_username() if alert.assignee_id else None,
        "acknowledged_at": _iso(alert.acknowledged_at),
        "acknowledged_by": alert.acknowledged_by or None,
        "resolved_at": _iso(alert.resolved_at),
        "resolved_by": alert.resolved_by or None,
        "reopened_count": alert.reopened_count,
        "created_at": _iso(alert.created_at),
        "url": console_url(alert.pk),
    }


def notification_for(alert: Alert, event_type: str, changes: dict | None = None, *,
                     delivery_state: str | None = None) -> Notification:
    """The immutable notification of one change of ``alert`` (load it with tenant, plugin, assignee)."""
    return Notification.build(event_type=event_type, alert_id=alert.pk, tenant_id=alert.tenant_id,
                              plugin_id=alert.plugin_id, severity=alert.severity,
                              payload=alert_payload(alert, event_type=event_type, delivery_state=delivery_state),
                              changes=changes)
