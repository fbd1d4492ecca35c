"""An alert's delivery state, derived from its webhook deliveries (the alerts app reads it when
``apps.delivery.feedback`` reports a change; delivery itself never writes alerts).

Only deliveries of notifying events (alert.triggered, alert.escalated) count, and per endpoint only
the latest one (an escalation's delivery supersedes the trigger's). Aggregate, most telling first:
any DOWNGRADED (the tenant was reached by fallback and the webhook is still retried) -> DOWNGRADED;
else anything still in flight -> PENDING; else all DELIVERED -> DELIVERED; else FAILED.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from apps.core.vocabulary import NOTIFY_EVENTS

from .models import Channel, Delivery, DeliveryState


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


def counts(delivery: Delivery) -> bool:
    """Does this delivery decide its alert's delivery state (webhook, notifying event)? Only these
    are reported: an alert.updated delivery reporting back would cause another update, forever."""
    return delivery.alert_id is not None and delivery.channel == Channel.WEBHOOK and \
        delivery.event_type in NOTIFY_EVENTS


def alert_delivery_states(alert_ids: Iterable[int]) -> dict[int, str]:
    """``alert_delivery_state`` for many alerts in one query (alerts without deliveries left out)."""
    ids = sorted(set(alert_ids))
    if not ids:
        return {}
    latest: dict[int, dict[int | None, str]] = {}
    rows = (Delivery.objects.filter(alert_id__in=ids, channel=Channel.WEBHOOK, event_type__in=NOTIFY_EVENTS)
            .order_by("id").values_list("alert_id", "endpoint_id", "state", "downgraded_at"))
    for alert_id, endpoint_id, state, downgraded_at in rows:
        latest.setdefault(alert_id, {})[endpoint_id] = effective_state(state, downgraded_at)
    out = {}
    for alert_id, per_endpoint in latest.items():
        state = aggregate(list(per_endpoint.values()))
        if state is not None:
            out[alert_id] = str(state)
    return out
