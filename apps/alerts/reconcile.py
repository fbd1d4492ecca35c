"""The alert half of ``reconcile_alerts``: alert delivery states that disagree with the deliveries,
and notifications that were never written for subscribed endpoints. Idempotent."""
from __future__ import annotations

from datetime import datetime

from django.db import transaction

from apps.core import clock
from apps.core.vocabulary import EVENT_TRIGGERED
from apps.delivery import outbox, selectors as delivery_selectors
from apps.delivery.feedback import DeliveryReport
from apps.delivery.maintenance import release_stuck
from apps.delivery.state import alert_delivery_states

from . import delivery_feedback
from .models import Alert, AlertState
from .payload import notification_for


# Alerts looked at per read of their deliveries.
CHUNK = 1000


def fill_missing(since: datetime) -> int:
    """Alerts (not suppressed, created since ``since``) lacking an alert.triggered delivery for an
    endpoint that was subscribed when they were created: write the delivery now. Returns how many.

    The alerts are read as four columns and their deliveries one read per CHUNK alerts: a run after
    a storm costs a query per thousand alerts, not one per alert (it ran every alert of the last
    24 h, with its tenant, plugin and assignee, through a query of its own). Only the alerts that
    miss a delivery are loaded whole."""
    by_tenant = delivery_selectors.endpoints_subscribed_to(EVENT_TRIGGERED)
    if not by_tenant:
        return 0
    rows = (Alert.objects.filter(created_at__gte=since, tenant_id__in=list(by_tenant))
            .exclude(state=AlertState.SUPPRESSED).order_by("pk").values_list("pk", "tenant_id", "created_at", "severity"))
    created = 0
    chunk: list[tuple] = []
    for row in rows.iterator(chunk_size=CHUNK):
        chunk.append(row)
        if len(chunk) == CHUNK:
            created += _fill_chunk(chunk, by_tenant)
            chunk = []
    return created + (_fill_chunk(chunk, by_tenant) if chunk else 0)


def _fill_chunk(chunk: list[tuple], by_tenant: dict) -> int:
    have = delivery_selectors.endpoints_notified_many([pk for pk, *_ in chunk], EVENT_TRIGGERED)
    wanting = {}
    for pk, tenant_id, created_at, severity in chunk:
        missing = [e.pk for e in by_tenant[tenant_id]
                   if e.pk not in have.get(pk, ()) and e.created_at <= created_at
                   and outbox.subscribed(e, EVENT_TRIGGERED, severity)]
        if missing:
            wanting[pk] = missing
    created = 0
    for alert in Alert.objects.filter(pk__in=list(wanting)).select_related("tenant", "plugin", "assignee").order_by("pk"):
        with transaction.atomic():
            reports = outbox.notify([notification_for(alert, EVENT_TRIGGERED)], endpoint_ids=wanting[alert.pk])
            delivery_feedback.apply(reports)
            created += sum(len(r.detail["delivery_ids"]) for r in reports)
    return created


def fix_states(since: datetime) -> int:
    """Alerts whose delivery_state disagrees with their deliveries get the computed state recorded."""
    alert_ids = delivery_selectors.alerts_with_notifications_since(since)
    computed = alert_delivery_states(alert_ids)
    recorded = dict(Alert.objects.filter(pk__in=list(computed)).values_list("pk", "delivery_state"))
    fixed = 0
    for alert_id, state in sorted(computed.items()):
        if alert_id in recorded and state != recorded[alert_id]:
            with transaction.atomic():
                fixed += len(delivery_feedback.apply(
                    [DeliveryReport(alert_id, {"reconciled_from": recorded[alert_id]})]))
    return fixed


def reconcile(*, since: datetime) -> dict[str, int]:
    """Release stuck deliveries, fix alert states, fill missing deliveries; returns what each fixed."""
    released = release_stuck(clock.now())
    fixed = fix_states(since)  # before filling: new deliveries report their own state
    return {"stuck_released": released, "states_fixed": fixed, "missing_created": fill_missing(since)}
