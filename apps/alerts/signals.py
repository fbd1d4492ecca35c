"""``alert_event``: sent inside the transaction of every alert change that tenants hear about.

Receivers (the delivery outbox) write their rows in that same transaction, so an alert change and
the deliveries it causes commit together or not at all. ``event_type`` is one of EVENT_TYPES.
"""
from django.dispatch import Signal

EVENT_TRIGGERED = "alert.triggered"
EVENT_UPDATED = "alert.updated"
EVENT_ESCALATED = "alert.escalated"
EVENT_TYPES = (EVENT_TRIGGERED, EVENT_UPDATED, EVENT_ESCALATED)

# Sent with: alert (Alert), event_type (str), data (dict: what changed, e.g. {"state": "ACKNOWLEDGED"}).
alert_event = Signal()
