"""What every alert change leaves behind: a timeline line, an audit row and (maybe) a notification.

Called inside the service's transaction, so history, the change and the deliveries it causes
(``apps.delivery.outbox.notify`` writes them in the same transaction) commit together.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from apps.audit.services import describe_actor, record, record_many
from apps.core import clock
from apps.core.fastpath import insert_rows
from apps.core.vocabulary import AlertDeliveryState
from apps.delivery import outbox
from apps.stream import services as stream
from apps.stream.models import StreamEventType

from . import delivery_feedback
from .models import Alert, TimelineEntry
from .payload import notification_for


def actor_label(actor: Any) -> str:
    """'alice', 'token:ci', or 'system' (None)."""
    return describe_actor(actor)[2][:200]


def _actor_user(actor: Any):
    # Only real users go in the FK; token principals and the system are labels.
    if actor is None or isinstance(actor, str) or getattr(actor, "token_id", None) is not None:
        return None
    return actor if getattr(actor, "_meta", None) is not None and getattr(actor, "is_authenticated", False) else None


def _stream_event(alert_id: int, tenant_id: int, kind: str, message: str, state: str, severity: str, title: str,
                  delivery_state: str) -> tuple:
    """What the live stream says of a change (every change, also of alerts born silenced)."""
    type_ = {TimelineEntry.Kind.CREATED: StreamEventType.ALERT_CREATED,
             TimelineEntry.Kind.ESCALATED: StreamEventType.ALERT_ESCALATED}.get(kind, StreamEventType.ALERT_UPDATED)
    return (tenant_id, type_, alert_id, {"alert_id": alert_id, "state": state, "severity": severity, "title": title,
                                         "delivery_state": delivery_state, "kind": kind, "message": message[:300]})


def log_change(alert: Alert, *, kind: str, actor: Any, message: str = "", data: dict | None = None,
               audit_action: str | None = None) -> TimelineEntry:
    """Append a TimelineEntry and (unless audit_action is None) an AuditEvent ``alert.<...>``."""
    entry = TimelineEntry.objects.create(
        alert=alert, at=clock.now(), kind=kind, actor_label=actor_label(actor), actor_user=_actor_user(actor),
        message=message, data=data or {},
    )
    stream.append_many([_stream_event(alert.pk, alert.tenant_id, kind, message, alert.state, alert.severity,
                                      alert.title, alert.delivery_state)])
    if audit_action:
        record(audit_action, actor=actor, target=alert, tenant=alert.tenant_id,
               data={"message": message, **(data or {})} if message else dict(data or {}))
    return entry


TIMELINE_COLUMNS = ("alert_id", "at", "kind", "actor_label", "actor_user_id", "message", "data")


def insert_timeline(rows: Sequence[tuple]) -> list[int]:
    """Timeline lines as plain rows (``TIMELINE_COLUMNS``), one COPY on PostgreSQL."""
    return insert_rows(TimelineEntry, TIMELINE_COLUMNS, rows)


def stream_events(changes: Sequence[tuple[Alert, str, str]]) -> None:
    """The live-stream events of changes whose timeline lines were written in bulk: (alert, kind, message)."""
    stream.append_many([_stream_event(a.pk, a.tenant_id, kind, message, a.state, a.severity, a.title, a.delivery_state)
                        for a, kind, message in changes])


def log_changes(changes: Sequence[tuple[int, int, str, dict]], *, kind: str, actor: Any,
                audit_action: str, current: dict[int, tuple[str, str, str, str]] | None = None) -> None:
    """``log_change`` for many alerts at once: ``changes`` are (alert_id, tenant_id, message, data);
    one INSERT for the timeline lines and one for the audit rows. ``current``: the alerts' (state,
    severity, title, delivery_state) as the caller's transaction left them, when it has them (else
    they are read, for the stream events)."""
    if not changes:
        return
    now, label, user = clock.now(), actor_label(actor), _actor_user(actor)
    insert_timeline([(alert_id, now, kind, label, user.pk if user else None, message, data)
                     for alert_id, _tenant, message, data in changes])
    if current is None:
        current = {pk: row for pk, *row in Alert.objects.filter(pk__in=[c[0] for c in changes])
                   .values_list("pk", "state", "severity", "title", "delivery_state")}
    stream.append_many([_stream_event(alert_id, tenant_id, kind, message, *current[alert_id])
                        for alert_id, tenant_id, message, _data in changes if alert_id in current])
    record_many(audit_action, [{"target_type": "alerts.alert", "target_id": alert_id, "tenant": tenant_id,
                                 "data": data} for alert_id, tenant_id, _message, data in changes], actor=actor)


def emit(alert: Alert, event_type: str, data: dict) -> None:
    """Notify tenants of this change unless the alert has notified nobody yet (created under a silence).

    Once tenants have heard of an alert they hear of every change; an alert born silenced stays
    quiet until it is unsuppressed (which then sends alert.triggered).
    """
    emit_many([(alert, data)], event_type)


def emit_many(items: Sequence[tuple[Alert, dict]], event_type: str, *, new: bool = False) -> None:
    """``emit`` for many alerts (one endpoint query, one INSERT of deliveries): hand delivery one
    ``Notification`` each, then record the delivery state its new rows give each alert. ``new``:
    the alerts were created in this transaction (no other deliveries, nobody else can see them) and
    their creation's history, written after this, tells that first state."""
    live = [(alert, data) for alert, data in items if alert.silence_id is None]
    if not live:
        return
    # Whoever receives a new alert's first notification is a destination whose row is written now:
    # to them the alert is pending (what its row makes it), not the NONE it was stored with.
    told = AlertDeliveryState.PENDING if new else None
    reports = outbox.notify([notification_for(alert, event_type, data, delivery_state=told) for alert, data in live])
    if reports:
        delivery_feedback.apply(reports, instances={alert.pk: alert for alert, _ in live}, new=new)
