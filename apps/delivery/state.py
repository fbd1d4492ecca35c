"""An alert's delivery state, derived from its webhook deliveries, and reported by signal.

Only deliveries of notifying events (alert.triggered, alert.escalated) count, and per endpoint only
the latest one (an escalation's delivery supersedes the trigger's). Aggregate, most telling first:
any DOWNGRADED (the tenant was reached by fallback and the webhook is still retried) -> DOWNGRADED;
else anything still in flight -> PENDING; else all DELIVERED -> DELIVERED; else FAILED.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .models import NOTIFY_EVENTS, Channel, Delivery, DeliveryState
from .signals import delivery_state_changed, delivery_states_changed


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


def lock_alerts(alert_ids: Iterable[int]) -> None:
    """Row-lock the alerts (in id order) before their state is computed from the delivery rows.

    Two transactions finishing deliveries of the same alert to different endpoints would each
    read the other's row as still in flight and both report PENDING; with the alert locked, the
    second waits and then (read committed) sees the first one's committed row.
    """
    ids = sorted(set(alert_ids))
    if ids:
        alert_model = Delivery._meta.get_field("alert").related_model  # no import of alerts internals
        list(alert_model.objects.select_for_update().filter(pk__in=ids).order_by("pk").values_list("pk", flat=True))


def report(delivery: Delivery, detail: dict) -> str | None:
    """Send ``delivery_state_changed`` for the delivery's alert when the delivery counts (webhook,
    notifying event). Call inside the transaction that changed the row. Returns the state sent."""
    if delivery.alert_id is None or delivery.channel != Channel.WEBHOOK or delivery.event_type not in NOTIFY_EVENTS:
        return None
    lock_alerts([delivery.alert_id])
    state = alert_delivery_state(delivery.alert_id)
    if state is None:
        return None
    delivery_state_changed.send(sender=Delivery, alert_id=delivery.alert_id, state=str(state),
                                detail={"delivery_id": delivery.pk, "endpoint_id": delivery.endpoint_id,
                                        "event_type": delivery.event_type, **detail})
    return state


def counts(delivery: Delivery) -> bool:
    """Does this delivery decide its alert's delivery state (webhook, notifying event)?"""
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


def report_many(items: Iterable[tuple[Delivery, dict]]) -> dict[int, str]:
    """``report`` for a batch recorded in one transaction: the states of all touched alerts are
    computed in one query and sent as one ``delivery_states_changed`` (one entry per alert; when
    several deliveries of one alert are in the batch, the last one's detail goes with it).
    Call inside the transaction that changed the rows. Returns {alert_id: state sent}."""
    by_alert: dict[int, tuple[Delivery, dict]] = {}
    for delivery, detail in items:
        if counts(delivery):
            by_alert[delivery.alert_id] = (delivery, detail)
    lock_alerts(by_alert)
    states = alert_delivery_states(by_alert)
    reports = [
        {"alert_id": alert_id, "state": states[alert_id],
         "detail": {"delivery_id": d.pk, "endpoint_id": d.endpoint_id, "event_type": d.event_type, **detail}}
        for alert_id, (d, detail) in by_alert.items() if alert_id in states
    ]
    if not reports:
        return {}
    if delivery_states_changed.has_listeners(Delivery):
        delivery_states_changed.send(sender=Delivery, reports=reports)
    else:
        for r in reports:
            delivery_state_changed.send(sender=Delivery, alert_id=r["alert_id"], state=r["state"], detail=r["detail"])
    return {r["alert_id"]: r["state"] for r in reports}
