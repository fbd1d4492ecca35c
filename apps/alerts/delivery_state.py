"""Keeps ``Alert.delivery_state`` in step with the delivery app (``delivery_state_changed``).

Delivery reports through a signal so it never imports alerts internals. Here, inside the sender's
transaction: a guarded UPDATE (nothing happens when the state is unchanged, so repeated reports
are harmless), a timeline line, an audit event, and for DELIVERED / FAILED / DOWNGRADED an
``alert.updated`` event so endpoints subscribed to updates hear it (monitoring.alert.updated).
Deliveries of alert.updated never report back (the delivery app filters them), so this cannot loop.
"""
from __future__ import annotations

from django.dispatch import receiver

from apps.audit.services import record
from apps.core import clock
from apps.delivery.signals import delivery_state_changed

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
