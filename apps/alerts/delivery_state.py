"""Keeps ``Alert.delivery_state`` in step with the delivery app (``delivery_state_changed``).

Delivery reports through a signal so it never imports alerts internals. Here, inside the sender's
transaction: a guarded UPDATE (nothing happens when the state is unchanged, so repeated reports
are harmless), a timeline line, an audit event, and for DELIVERED / FAILED / DOWNGRADED an
``alert.updated`` event so endpoints subscribed to updates hear it (monitoring.alert.updated).
Deliveries of alert.updated never report back (the delivery app filters them), so this cannot loop.

``delivery_states_changed`` (a batch of recorded attempts) does the same for a list of alerts in one
statement: an UPDATE ... RETURNING tells which alerts really changed (rows locked in id order, so
concurrent batches cannot deadlock on them) and feeds their timeline and audit inserts; then the
changed alerts that are announced are loaded in one query for their alert.updated events.
"""
from __future__ import annotations

import json

from django.db import connection
from django.dispatch import receiver

from apps.audit.models import AuditEvent
from apps.audit.services import describe_actor, record
from apps.core import clock
from apps.delivery.signals import delivery_state_changed, delivery_states_changed

from .models import Alert, DeliveryState, TimelineEntry
from .signals import EVENT_UPDATED, alert_event

ANNOUNCED = (DeliveryState.DELIVERED, DeliveryState.FAILED, DeliveryState.DOWNGRADED)
_MESSAGES = {
    DeliveryState.PENDING: "Delivery pending",
    DeliveryState.DELIVERED: "Delivered to the webhook",
    DeliveryState.FAILED: "Webhook delivery failed",
    DeliveryState.DOWNGRADED: "Webhook failing: sent by fallback email/SMS",
}


@receiver(delivery_state_changed, dispatch_uid="alerts.delivery_state")
def on_delivery_state_changed(sender, alert_id: int, state: str, detail: dict | None = None, alert=None,
                              **kwargs) -> None:
    now = clock.now()
    if not Alert.objects.filter(pk=alert_id).exclude(delivery_state=state).update(delivery_state=state, updated_at=now):
        return
    if alert is None:
        alert = Alert.objects.select_related("tenant", "plugin").get(pk=alert_id)
    alert.delivery_state = state  # keep the caller's instance in step (a later save must not undo this)
    detail = dict(detail or {})
    TimelineEntry.objects.create(alert_id=alert_id, at=now, kind=TimelineEntry.Kind.DELIVERY,
                                 actor_label="system", message=_MESSAGES.get(state, state),
                                 data={"delivery_state": state, **detail})
    record("alert.delivery_state", target_type="alerts.alert", target_id=alert_id, tenant=alert.tenant_id,
           data={"delivery_state": state, **detail})
    if state in ANNOUNCED and getattr(alert, "silence_id", None) is None:
        alert_event.send(sender=Alert, alert=alert, event_type=EVENT_UPDATED, data={"delivery_state": state})


def _set_states(wanted: dict[int, str], details: dict[int, dict], now) -> list[tuple[int, int, int | None, str]]:
    """Set ``delivery_state`` where it differs and write, for each alert that changed, its timeline
    line and audit row; return (id, tenant_id, silence_id, state) of the alerts that changed.

    One statement: the alert rows locked in id order, the guarded UPDATE ... RETURNING, and the
    timeline and audit inserts fed by what it returned (so only changed alerts get a line)."""
    if connection.vendor != "postgresql":
        return _set_states_portable(wanted, details, now)
    table = connection.ops.quote_name(Alert._meta.db_table)
    timeline = connection.ops.quote_name(TimelineEntry._meta.db_table)
    audit = connection.ops.quote_name(AuditEvent._meta.db_table)
    ids = sorted(wanted)
    states = [wanted[i] for i in ids]
    actor_type, actor_id, actor_label = describe_actor(None)
    sql = f"""
        WITH v AS (
            SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::jsonb[]) AS v(id, state, message, data)
        ),
        locked AS (
            SELECT a.id FROM {table} a JOIN v ON a.id = v.id
            WHERE a.delivery_state <> v.state ORDER BY a.id FOR UPDATE OF a
        ),
        changed AS (
            UPDATE {table} a SET delivery_state = v.state, updated_at = %s
            FROM v, locked
            WHERE a.id = v.id AND a.id = locked.id AND a.delivery_state <> v.state
            RETURNING a.id, a.tenant_id, a.silence_id, v.state, v.message, v.data
        ),
        timeline AS (
            INSERT INTO {timeline} (alert_id, at, kind, actor_label, actor_user_id, message, data)
            SELECT id, %s, %s, %s, NULL, message, data FROM changed ORDER BY id
        ),
        audit AS (
            INSERT INTO {audit} (at, actor_type, actor_id, actor_label, action, target_type, target_id, tenant_id,
                                 data, ip)
            SELECT %s, %s, %s, %s, %s, %s, id::text, tenant_id, data, NULL FROM changed ORDER BY id
        )
        SELECT id, tenant_id, silence_id, state FROM changed ORDER BY id
    """
    params = [
        ids, states, [_MESSAGES.get(s, s) for s in states],
        [json.dumps({"delivery_state": s, **details[i]}) for i, s in zip(ids, states)],
        now,
        now, str(TimelineEntry.Kind.DELIVERY), "system",
        now, str(actor_type), actor_id, actor_label, "alert.delivery_state", "alerts.alert",
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _set_states_portable(wanted: dict[int, str], details: dict[int, dict], now) -> list[tuple[int, int, int | None, str]]:
    """``_set_states`` for the embedded SQLite database: per alert, the guarded UPDATE, then its
    timeline line and audit row through the ORM."""
    changed = []
    for alert_id in sorted(wanted):
        state = wanted[alert_id]
        if not Alert.objects.filter(pk=alert_id).exclude(delivery_state=state).update(delivery_state=state,
                                                                                        updated_at=now):
            continue
        tenant_id, silence_id = Alert.objects.filter(pk=alert_id).values_list("tenant_id", "silence_id").get()
        data = {"delivery_state": state, **details[alert_id]}
        TimelineEntry.objects.create(alert_id=alert_id, at=now, kind=TimelineEntry.Kind.DELIVERY,
                                     actor_label="system", message=_MESSAGES.get(state, state), data=data)
        record("alert.delivery_state", target_type="alerts.alert", target_id=alert_id, tenant=tenant_id, data=data)
        changed.append((alert_id, tenant_id, silence_id, state))
    return changed


@receiver(delivery_states_changed, dispatch_uid="alerts.delivery_states")
def on_delivery_states_changed(sender, reports: list[dict], **kwargs) -> None:
    """List form of ``on_delivery_state_changed``: one timeline line + one audit row per alert whose
    state changed, nothing for the others, alert.updated for the announced ones."""
    wanted: dict[int, str] = {}
    details: dict[int, dict] = {}
    for r in reports:
        wanted[r["alert_id"]] = str(r["state"])
        details[r["alert_id"]] = dict(r.get("detail") or {})
    if not wanted:
        return
    changed = _set_states(wanted, details, clock.now())
    announce = {alert_id: state for alert_id, _t, silence_id, state in changed
                if state in ANNOUNCED and silence_id is None}
    if not announce:
        return
    alerts = Alert.objects.select_related("tenant", "plugin").in_bulk(list(announce))
    for alert_id, state in announce.items():
        alert = alerts.get(alert_id)
        if alert is None:  # deleted meanwhile
            continue
        alert_event.send(sender=Alert, alert=alert, event_type=EVENT_UPDATED, data={"delivery_state": state})
