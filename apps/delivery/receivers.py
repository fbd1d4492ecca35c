"""Connects the outbox to the alerts app's ``alert_event`` (sent inside each alert change's transaction)."""
from __future__ import annotations

from django.dispatch import receiver

from apps.alerts.signals import alert_event

from . import outbox


@receiver(alert_event, dispatch_uid="delivery.outbox")
def write_outbox(sender, alert, event_type: str, data: dict | None = None, **kwargs) -> None:
    """One delivery per subscribed endpoint, in the caller's transaction (see outbox.create_for_event)."""
    outbox.create_for_event(alert=alert, event_type=event_type, data=data)
