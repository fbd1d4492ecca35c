"""An alert's delivery state, derived from its deliveries (the alerts app reads it when
``apps.delivery.feedback`` reports a change; delivery itself never writes alerts).

Only deliveries of notifying events (alert.triggered, alert.escalated) to a webhook endpoint or a
routed channel count, and per destination only the latest one (an escalation's delivery supersedes
the trigger's). Aggregate, most telling first:
any DOWNGRADED (the tenant was reached by fallback and the webhook is still retried) -> DOWNGRADED;
else anything still in flight -> PENDING; else all DELIVERED -> DELIVERED; else FAILED.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import Q

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


def _routed() -> Q:
    """Rows that decide the state: webhook deliveries and deliveries to a routed channel (not the
    fallbacks those cause, and not grouped digests, which carry no alert)."""
    return (Q(channel=Channel.WEBHOOK) | Q(notification_channel__isnull=False, source__isnull=True)) & \
        Q(event_type__in=NOTIFY_EVENTS)


def _destination(endpoint_id: int | None, channel_id: int | None) -> tuple[str, int | None]:
    return ("channel", channel_id) if channel_id else ("endpoint", endpoint_id)


def alert_delivery_state(alert_id: int) -> str | None:
    """Compute an alert's delivery state from its rows (one query); None without routed deliveries."""
    return alert_delivery_states([alert_id]).get(alert_id)


def counts(delivery: Delivery) -> bool:
    """Does this delivery decide its alert's delivery state (webhook or routed channel, notifying
    event)? Only these are reported: an alert.updated delivery reporting back would cause another
    update, forever."""
    routed = delivery.channel == Channel.WEBHOOK or (delivery.notification_channel_id is not None
                                                     and delivery.source_id is None)
    return delivery.alert_id is not None and routed and delivery.event_type in NOTIFY_EVENTS


def states_of(rows: Iterable[Delivery]) -> dict[int, str]:
    """``alert_delivery_states`` over rows in memory (in id order), for alerts that have no others."""
    latest: dict[int, dict[tuple, str]] = {}
    for d in sorted(rows, key=lambda d: d.pk or 0):
        if counts(d):
            latest.setdefault(d.alert_id, {})[_destination(d.endpoint_id, d.notification_channel_id)] = \
                effective_state(d.state, d.downgraded_at)
    return {alert_id: str(aggregate(list(per.values()))) for alert_id, per in latest.items()}


def alert_delivery_states(alert_ids: Iterable[int]) -> dict[int, str]:
    """The delivery state of many alerts in one query (alerts without routed deliveries left out):
    per destination (endpoint or channel) the latest row counts."""
    ids = sorted(set(alert_ids))
    if not ids:
        return {}
    latest: dict[int, dict[tuple, str]] = {}
    rows = (Delivery.objects.filter(_routed(), alert_id__any=ids).order_by("id")
            .values_list("alert_id", "endpoint_id", "notification_channel_id", "state", "downgraded_at"))
    for alert_id, endpoint_id, channel_id, state, downgraded_at in rows:
        latest.setdefault(alert_id, {})[_destination(endpoint_id, channel_id)] = effective_state(state, downgraded_at)
    out = {}
    for alert_id, per_destination in latest.items():
        state = aggregate(list(per_destination.values()))
        if state is not None:
            out[alert_id] = str(state)
    return out
