"""How delivery tells the alerts app that an alert's deliveries changed, without importing it.

Data flows alerts -> delivery. The one way back is this port: the alerts app connects its handler
once at start-up (``AlertsConfig.ready``), and delivery calls ``report`` once per recorded batch,
inside that batch's transaction, with one ``DeliveryReport`` per alert whose notifying webhook
deliveries changed. The handler locks its alerts, reads their delivery state from
``apps.delivery.state`` and records what changed. No signal, no second pass, no cache.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    alert_id: int
    # What happened, for the alert's timeline: delivery_id, endpoint_id, event_type, channel,
    # attempt, status_code, error.
    detail: dict[str, Any] = field(default_factory=dict)
    # ``outbox.notify`` only: the delivery state the rows it just wrote give the alert on their own
    # (what ``state.alert_delivery_states`` reads back when the alert has no other rows).
    rows_state: str | None = None


Handler = Callable[[Sequence[DeliveryReport]], None]
_handler: Handler | None = None


def connect(handler: Handler) -> None:
    """Set the one handler (idempotent for the same function; a second, different one is a bug)."""
    global _handler
    if _handler is not None and _handler is not handler:
        raise RuntimeError("delivery feedback already has a handler")
    _handler = handler


def report(reports: Sequence[DeliveryReport]) -> None:
    """Hand ``reports`` to the handler; call inside the transaction that changed the deliveries.

    Without a handler (delivery used on its own) the reports are dropped: the rows themselves are the
    record, and ``reconcile_alerts`` repairs alert states from them.
    """
    if reports and _handler is not None:
        _handler(reports)
