"""``delivery_state_changed``: how delivery reports an alert's delivery state without importing
alerts internals (DESIGN 1: data flows alerts -> delivery; delivery answers through a signal).

Sent inside the transaction that changed the delivery rows, with:
``alert_id`` (int), ``state`` ("PENDING" | "DELIVERED" | "FAILED" | "DOWNGRADED"), ``detail`` (dict:
delivery_id, endpoint_id, channel, attempt, status_code, error, event_type) and, when the sender holds
it, ``alert`` (the in-memory Alert instance, so the receiver can keep it in step). Only deliveries of
alert.triggered / alert.escalated events are reported: reporting alert.updated deliveries would make
each state change cause an update that causes a state change, forever.
"""
from django.dispatch import Signal

delivery_state_changed = Signal()

# The list form, for a batch of recorded attempts (one transaction): ``reports`` is a list of dicts
# ``{"alert_id", "state", "detail"}``, at most one per alert. Receivers handle the whole list at once
# (one UPDATE, bulk timeline/audit rows). When nothing listens to it, each report goes out through
# ``delivery_state_changed`` instead.
delivery_states_changed = Signal()
