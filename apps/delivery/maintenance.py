"""Cron-side repairs of delivery's own rows: ``release_stuck`` (the delivery half of
``reconcile_alerts``; the alert half lives in ``apps.alerts.reconcile``) and ``check_endpoints``
(self-test of every endpoint). Idempotent: a second run finds nothing to fix."""
from __future__ import annotations

from datetime import datetime

from .dispatch import lease_expired_q
from .models import Delivery, DeliveryState, WebhookEndpoint
from .services import SelfTestResult, self_test_endpoint


def release_stuck(now: datetime) -> int:
    """SENDING rows past their lease (worker died mid-send) become due again."""
    stuck = Delivery.objects.filter(lease_expired_q())  # the lease is judged by the database's clock
    n = stuck.filter(downgraded_at__isnull=False).update(state=DeliveryState.DOWNGRADED, claim_token="",
                                                          next_attempt_at=now)
    return n + stuck.filter(downgraded_at__isnull=True).update(state=DeliveryState.PENDING, claim_token="",
                                                                 next_attempt_at=now)


def check_endpoints(*, tenant_slug: str | None = None) -> list[tuple[WebhookEndpoint, SelfTestResult]]:
    """Self-test every enabled endpoint (of one tenant); returns (endpoint, result) pairs."""
    qs = WebhookEndpoint.objects.filter(enabled=True).select_related("tenant").order_by("tenant__slug", "pk")
    if tenant_slug:
        qs = qs.filter(tenant__slug=tenant_slug)
    return [(e, self_test_endpoint(endpoint=e)) for e in qs]
