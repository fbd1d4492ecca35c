"""An alert's delivery state, derived from its webhook deliveries, and reported by signal.

Only deliveries of notifying events (alert.triggered, alert.escalated) count, and per endpoint only
the latest one (an escalation's delivery supersedes the trigger's). Aggregate, most telling first:
any DOWNGRADED (the tenant was reached by fallback and the webhook is still retried) -> DOWNGRADED;
else anything still in flight -> PENDING; else all DELIVERED -> DELIVERED; else FAILED.
"""
from __future__ import annotations

from typing import Any

from .models import NOTIFY_EVENTS, Channel, Delivery, DeliveryState
from .signals import delivery_state_changed


def effective_state(state: str, downgraded_at: Any) -> str:
    """A row's state as the alert sees it: SENDING counts as PENDING or DOWNGRADED."""
    if state in (DeliveryState.DELIVERED, DeliveryState.FAILED):
        return state
    return DeliveryState.DOWNGRADED if downgraded_at else DeliveryState.PENDING


def aggregate(states: list[str]) -> str | None:
    """The alert-level state for the per-endpoint states; None when there are none."""
    if not states:
        return None
    if DeliveryState.DOWNGRADED in states:
        return DeliveryState.DOWNGRADED
    if DeliveryState.PENDING in states:
        return DeliveryState.PENDING
    if all(s == DeliveryState.DELIVERED for s in states):
        return DeliveryState.DELIVERED
    return DeliveryState.FAILED


def alert_delivery_state(alert_id: int) -> str | None:
    """Compute an alert's delivery state from its rows (one query); None without webhook deliveries."""
    latest: dict[int | None, str] = {}
    rows = (Delivery.objects.filter(alert_id=alert_id, channel=Channel.WEBHOOK, event_type__in=NOTIFY_EVENTS)
            .order_by("id").values_list("endpoint_id", "state", "downgraded_at"))
    for endpoint_id, state, downgraded_at in rows:
        latest[endpoint_id] = effective_state(state, downgraded_at)
    return aggregate(list(latest.values()))


def report(delivery: Delivery, detail: dict) -> str | None:
    """Send ``delivery_state_changed`` for the delivery's alert when the delivery counts (webhook,
    notifying event). Call inside the transaction that changed the row. Returns the state sent."""
    if delivery.alert_id is None or delivery.channel != Channel.WEBHOOK or delivery.event_type not in NOTIFY_EVENTS:
        return None
    state = alert_delivery_state(delivery.alert_id)
    if state is None:
        return None
    delivery_state_changed.send(sender=Delivery, alert_id=delivery.alert_id, state=str(state),
                                detail={"delivery_id": delivery.pk, "endpoint_id": delivery.endpoint_id,
                                        "event_type": delivery.event_type, **detail})
    return state
