"""Cron-side repairs: ``reconcile`` (stuck rows, wrong alert states, missing deliveries) and
``check_endpoints`` (self-test of every endpoint). Idempotent: a second run finds nothing to fix."""
from __future__ import annotations

from datetime import datetime

from django.db import transaction

from apps.core import clock

from . import outbox, state
from .dispatch import lease
from .models import NOTIFY_EVENTS, Channel, Delivery, DeliveryState, WebhookEndpoint
from .services import SelfTestResult, self_test_endpoint
from .signals import delivery_state_changed


def release_stuck(now: datetime) -> int:
    """SENDING rows past their lease (worker died mid-send) become due again."""
    stuck = Delivery.objects.filter(state=DeliveryState.SENDING, claimed_at__lt=now - lease())
    n = stuck.filter(downgraded_at__isnull=False).update(state=DeliveryState.DOWNGRADED, claim_token="",
                                                          next_attempt_at=now)
    return n + stuck.filter(downgraded_at__isnull=True).update(state=DeliveryState.PENDING, claim_token="",
                                                                 next_attempt_at=now)


def fill_missing(since: datetime) -> int:
    """Alerts (not suppressed, created since ``since``) lacking an alert.triggered delivery for an
    endpoint that was subscribed when they were created: write the delivery now."""
    from apps.alerts.models import Alert  # read-only: which alerts should have been announced

    created = 0
    endpoints = WebhookEndpoint.objects.filter(enabled=True, event_types__isnull=False)
    by_tenant: dict[int, list[WebhookEndpoint]] = {}
    for e in endpoints:
        if "alert.triggered" in (e.event_types or []):
            by_tenant.setdefault(e.tenant_id, []).append(e)
    if not by_tenant:
        return 0
    alerts = (Alert.objects.filter(created_at__gte=since, tenant_id__in=list(by_tenant))
              .exclude(state="SUPPRESSED").select_related("tenant", "plugin"))
    for alert in alerts.iterator():
        have = set(Delivery.objects.filter(alert_id=alert.pk, channel=Channel.WEBHOOK, event_type="alert.triggered")
                   .values_list("endpoint_id", flat=True))
        missing = [e.pk for e in by_tenant[alert.tenant_id]
                   if e.pk not in have and e.created_at <= alert.created_at
                   and outbox.subscribed(e, "alert.triggered", alert.severity)]
        if missing:
            with transaction.atomic():
                created += len(outbox.create_for_event(alert=alert, event_type="alert.triggered",
                                                       endpoint_ids=missing))
    return created


def fix_states(since: datetime) -> int:
    """Alerts whose delivery_state disagrees with their deliveries get the computed state reported."""
    from apps.alerts.models import Alert

    alert_ids = set(Delivery.objects.filter(created_at__gte=since, channel=Channel.WEBHOOK,
                                            event_type__in=NOTIFY_EVENTS).values_list("alert_id", flat=True))
    current = dict(Alert.objects.filter(pk__in=alert_ids).values_list("pk", "delivery_state"))
    fixed = 0
    for alert_id, recorded in current.items():
        computed = state.alert_delivery_state(alert_id)
        if computed and computed != recorded:
            with transaction.atomic():
                delivery_state_changed.send(sender=Delivery, alert_id=alert_id, state=str(computed),
                                            detail={"reconciled_from": recorded})
            fixed += 1
    return fixed


def reconcile(*, since: datetime) -> dict[str, int]:
    """Run the three repairs; returns what each fixed."""
    now = clock.now()
    released = release_stuck(now)
    fixed = fix_states(since)  # before filling: new deliveries report their own state
    return {"stuck_released": released, "states_fixed": fixed, "missing_created": fill_missing(since)}


def check_endpoints(*, tenant_slug: str | None = None) -> list[tuple[WebhookEndpoint, SelfTestResult]]:
    """Self-test every enabled endpoint (of one tenant); returns (endpoint, result) pairs."""
    qs = WebhookEndpoint.objects.filter(enabled=True).select_related("tenant").order_by("tenant__slug", "pk")
    if tenant_slug:
        qs = qs.filter(tenant__slug=tenant_slug)
    return [(e, self_test_endpoint(endpoint=e)) for e in qs]
