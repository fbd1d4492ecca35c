"""Cron-side repairs of delivery's own rows: ``release_stuck`` (the delivery half of
``reconcile_alerts``; the alert half lives in ``apps.alerts.reconcile``) and ``check_endpoints``
(self-test of every endpoint, several at once). Idempotent: a second run finds nothing to fix."""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from itertools import chain, zip_longest
from urllib.parse import urlsplit

from django.conf import settings

from .dispatch import lease_expired_q
from .models import Delivery, DeliveryState, WebhookEndpoint
from .services import SelfTestResult, self_test_endpoint

logger = logging.getLogger("apps.delivery")


def release_stuck(now: datetime) -> int:
    """SENDING rows past their lease (worker died mid-send) become due again."""
    stuck = Delivery.objects.filter(lease_expired_q())  # the lease is judged by the database's clock
    n = stuck.filter(downgraded_at__isnull=False).update(state=DeliveryState.DOWNGRADED, claim_token="",
                                                          next_attempt_at=now)
    return n + stuck.filter(downgraded_at__isnull=True).update(state=DeliveryState.PENDING, claim_token="",
                                                                 next_attempt_at=now)


# Self-tests in flight at once. One after the other, each silent receiver held the whole run for its
# WEBHOOK_TIMEOUT_SECONDS: 30 silent ones among a check's endpoints were five minutes of waiting.
CHECK_THREADS = 16


def check_endpoints(*, tenant_slug: str | None = None) -> list[tuple[WebhookEndpoint, SelfTestResult]]:
    """Self-test every enabled endpoint (of one tenant); returns (endpoint, result) pairs, by tenant
    slug then id. CHECK_THREADS tests run at once, at most DELIVERY_CONCURRENCY_PER_DESTINATION of
    them to one host (many tenants' endpoints may be one receiver's), taken host by host in turn so
    that a host with many endpoints does not hold every thread waiting for its turn."""
    qs = WebhookEndpoint.objects.filter(enabled=True).select_related("tenant").order_by("tenant__slug", "pk")
    if tenant_slug:
        qs = qs.filter(tenant__slug=tenant_slug)
    endpoints = list(qs)
    by_host: dict[str, list[WebhookEndpoint]] = {}
    for e in endpoints:
        by_host.setdefault(_host(e.url), []).append(e)
    per_host = {host: threading.BoundedSemaphore(settings.DELIVERY_CONCURRENCY_PER_DESTINATION) for host in by_host}

    def test(endpoint: WebhookEndpoint) -> tuple[int, SelfTestResult]:
        with per_host[_host(endpoint.url)]:
            try:
                return endpoint.pk, self_test_endpoint(endpoint=endpoint)
            except Exception as exc:  # a bug: that endpoint's failed line, not the end of the run
                logger.exception("self-test of a webhook endpoint raised", extra={"endpoint_id": endpoint.pk})
                return endpoint.pk, SelfTestResult(False, None, 0, f"{type(exc).__name__}: {exc}")

    in_turn = [e for e in chain.from_iterable(zip_longest(*by_host.values())) if e is not None]
    with ThreadPoolExecutor(max_workers=max(1, min(CHECK_THREADS, len(endpoints)))) as pool:
        results = dict(pool.map(test, in_turn))
    return [(e, results[e.pk]) for e in endpoints]


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()
