"""Keeps ``Alert.delivery_state`` in step with the alert's deliveries: the one handler of
``apps.delivery.feedback`` (connected in ``AlertsConfig.ready``), also called by ``history.emit``
for the state an alert's new deliveries give it.

Once per batch, inside the sender's transaction: lock the reported alerts in id order (two batches
finishing deliveries of one alert must not both read the other's row as in flight), read their
state from the delivery rows (``apps.delivery.state``), and for each alert whose state changed set
it (one UPDATE per state), write its timeline line and audit row (one INSERT each; a new alert's
first state is told by its creation's own line and row instead), and for
DELIVERED / FAILED / DOWNGRADED send ``alert.updated`` so endpoints subscribed to updates hear it
(alerts of tenants with no endpoint or policy for it are not even loaded).
Deliveries of alert.updated are never reported back, so this cannot loop.
"""
from __future__ import annotations

from collections.abc import Sequence

from apps.core import clock
from apps.core.vocabulary import EVENT_UPDATED, AlertDeliveryState
from apps.delivery import outbox
from apps.delivery.feedback import DeliveryReport
from apps.delivery.state import alert_delivery_states

from . import history
from .models import Alert, TimelineEntry

ANNOUNCED = (AlertDeliveryState.DELIVERED, AlertDeliveryState.FAILED, AlertDeliveryState.DOWNGRADED)
_MESSAGES = {
    AlertDeliveryState.PENDING: "Delivery pending",
    AlertDeliveryState.DELIVERED: "Delivered to the webhook",
    AlertDeliveryState.FAILED: "Webhook delivery failed",
    AlertDeliveryState.DOWNGRADED: "Webhook failing: sent by fallback email/SMS",
}


def apply(reports: Sequence[DeliveryReport], *, instances: dict[int, Alert] | None = None,
          new: bool = False) -> dict[int, str]:
    """Record the delivery state of the reported alerts; returns {alert_id: new state} of those that
    changed. ``instances`` (alerts the caller holds in memory) are kept in step, so a later save
    cannot undo the change. Alerts deleted meanwhile are skipped. ``new``: every reported alert was
    created in the caller's transaction and is in ``instances`` (a storm's alerts: their rows are
    invisible to everyone else and the reported deliveries are all they have), so neither the lock
    nor the read of their deliveries is needed: the reports carry the state their rows give them.
    Their first state is part of their creation (the caller writes the creation's history after
    this, with the state in it), so it gets no timeline line or audit row of its own; an instance
    not written yet (``_state.adding``: its id reserved) gets no UPDATE either, it is written with
    the state."""
    details = {r.alert_id: r.detail for r in reports}  # several reports for one alert: the last one
    ids = sorted(details)
    if not ids:
        return {}
    described: dict[int, tuple[str, str, str]] = {}  # pk -> (state, severity, title), for the stream
    if new and instances is not None and all(pk in instances for pk in ids):
        current = {pk: (instances[pk].delivery_state, instances[pk].tenant_id, instances[pk].silence_id) for pk in ids}
        computed = {r.alert_id: r.rows_state for r in reports if r.rows_state is not None}
    else:
        current = {}
        for pk, delivery_state, tenant_id, silence_id, *description in (
                Alert.objects.select_for_update().filter(pk__any=ids).order_by("pk")
                .values_list("pk", "delivery_state", "tenant_id", "silence_id", "state", "severity", "title")):
            current[pk], described[pk] = (delivery_state, tenant_id, silence_id), tuple(description)
        computed = alert_delivery_states(list(current))
    changed = {pk: state for pk, state in computed.items() if state != current[pk][0]}
    if not changed:
        return {}
    now = clock.now()
    instances = instances or {}
    # Instances not written yet (their ids reserved: ``firing._insert_notified``) are written with
    # the state set below.
    unwritten = {pk for pk, alert in instances.items() if alert._state.adding}
    for state in set(changed.values()):
        pks = [pk for pk, s in changed.items() if s == state and pk not in unwritten]
        if pks:
            Alert.objects.filter(pk__any=pks).update(delivery_state=state, updated_at=now)
    for pk, state in changed.items():
        if pk in instances:
            instances[pk].delivery_state = state
    if not new:
        history.log_changes(
            [(pk, current[pk][1], _MESSAGES.get(state, state), {"delivery_state": state, **details[pk]})
             for pk, state in sorted(changed.items())],
            kind=TimelineEntry.Kind.DELIVERY, actor=None, audit_action="alert.delivery_state",
            # The rows locked above, as this transaction leaves them (no second read).
            current={pk: (*described[pk], state) for pk, state in changed.items()})
    announce = sorted(pk for pk, state in changed.items() if state in ANNOUNCED and current[pk][2] is None)
    if announce:
        # Only alerts whose tenant may hear alert.updated are loaded and described.
        listening = outbox.tenants_listening({current[pk][1] for pk in announce}, EVENT_UPDATED)
        announce = [pk for pk in announce if current[pk][1] in listening]
    if announce:
        loaded = Alert.objects.select_related("tenant", "plugin", "assignee").in_bulk(
            [pk for pk in announce if pk not in instances])
        alerts = [instances.get(pk) or loaded.get(pk) for pk in announce]
        history.emit_many([(a, {"delivery_state": changed[a.pk]}) for a in alerts if a is not None], EVENT_UPDATED)
    return changed
