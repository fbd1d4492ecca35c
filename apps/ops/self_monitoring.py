"""Alert Center watching itself (DESIGN 5): system checks that raise alerts on the platform tenant.

Each check reads the same figures /metrics exposes (apps.ops.figures) and, when its
condition holds, calls ``apps.alerts.services.fire_alert`` like any rule would: the alert is
deduplicated by its fingerprint (one active alert per check; later runs absorb into it), shows in
the console, and is delivered to the platform tenant's endpoints and, through the normal
downgrade path, to its fallback contacts. An alert auto-resolves once its condition has been false
for AUTO_RESOLVE_SECONDS (nobody has to close a self-healed blip by hand).

Checks and severities:
  delivery-success-rate   critical (P1)  first-attempt webhook success < 95 % over 15 min, with at
                                         least SELF_MONITOR_MIN_ATTEMPTS attempts (no alarm on 1 of 2)
  downgrades-per-day      warning        > 20 webhook deliveries downgraded in 24 h (governance)
  pipeline-stuck          emergency      batches PENDING too long, or deliveries overdue
  worker-heartbeat        emergency      the newest worker heartbeat is stale
"critical" for the P1: degraded delivery still reaches people through retries and fallback, and
critical escalates after 5 min unacknowledged. A stuck pipeline or dead worker means nobody gets
any alert at all, so the watchdog checks are "emergency" (escalate at once).

Failure policy: each check runs in its own transaction; one failing (database error) is logged
and the others still run. Note the watchdog's limit: with every worker dead, the alert is stored
and visible in the console but its notifications wait for a worker; the same conditions are
exposed on /metrics so Prometheus pages independently (README "Operations").
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from apps.alerts.services import fire_alert
from apps.core import clock
from apps.delivery.models import Delivery
from apps.tenants.models import Tenant

from . import figures

logger = logging.getLogger(__name__)

RULE_PREFIX = "system."
AUTO_RESOLVE_SECONDS = 10 * 60


@dataclass(frozen=True)
class Finding:
    """A check whose condition holds: what fire_alert needs beyond the fixed fields."""

    check: str
    severity: str
    category: str
    title: str
    summary: str
    recommended_action: str
    window_seconds: int


def platform_tenant() -> Tenant:
    """The tenant that owns Alert Center's own alerts; created (slug "platform") if missing."""
    tenant = Tenant.objects.filter(is_platform=True).order_by("id").first()
    if tenant is None:
        tenant, _ = Tenant.objects.get_or_create(
            slug="platform", defaults={"name": "Alert Center platform", "is_platform": True})
    return tenant


def check_delivery_success(now: datetime) -> Finding | None:
    rate, n = figures.success_rates(now)[("15m", "initial")]
    threshold = settings.SELF_MONITOR_SUCCESS_THRESHOLD
    if rate is None or n < settings.SELF_MONITOR_MIN_ATTEMPTS or rate >= threshold:
        return None
    return Finding(
        check="delivery-success-rate", severity="critical", category="self-monitoring",
        title=f"Webhook delivery success {rate:.0%} over 15 min (below {threshold:.0%})",
        summary=f"{round(rate * n)} of {n} first webhook attempts in the last 15 minutes succeeded.",
        recommended_action="Check the delivery workers' logs (channel, status, latency_ms) and the failing "
                           "endpoints in the console; if one tenant's receiver is down, its alerts go to fallback.",
        window_seconds=900)


def check_downgrades(now: datetime) -> Finding | None:
    n = Delivery.objects.filter(channel="webhook", downgraded_at__gte=now - timedelta(hours=24)).count()
    limit = settings.SELF_MONITOR_MAX_DOWNGRADES_PER_DAY
    if n <= limit:
        return None
    return Finding(
        check="downgrades-per-day", severity="warning", category="governance",
        title=f"{n} webhook deliveries downgraded to email/SMS in 24 h (limit {limit})",
        summary=f"{n} alert notifications went out by fallback in the last 24 hours because webhooks kept failing.",
        recommended_action="Review the downgraded endpoints with their tenants (console: deliveries); "
                           "disable or fix receivers that fail permanently.",
        window_seconds=86400)


def check_pipeline(now: datetime) -> Finding | None:
    b = figures.backlog(now, {}, per_tenant=False)
    stuck_batches = b.oldest_batch_age > settings.WATCHDOG_BATCH_PENDING_SECONDS
    if not stuck_batches and not b.deliveries_overdue:
        return None
    parts = []
    if stuck_batches:
        parts.append(f"{b.batches_pending} ingest batch(es) pending, the oldest for {b.oldest_batch_age:.0f}s")
    actions = []
    if stuck_batches or b.due_overdue:
        actions.append("Check that workers consume the detect and deliver queues (celery inspect active), "
                       "the broker is reachable and beat runs; restart the stuck workers.")
    if b.due_overdue:
        parts.append(f"{b.due_overdue} deliveries due but not attempted, the oldest for "
                     f"{b.oldest_due_overdue_age:.0f}s")
    if b.parked_expired:
        parts.append(f"{b.parked_expired} deliveries parked behind a webhook's circuit breaker past their "
                     f"expiry, the oldest by {b.oldest_parked_expired_age:.0f}s")
        actions.append("The delivery sweep (deliver.sweep) fails to fail or release parked deliveries, or "
                       "is behind a very large backlog that expired at once: read its errors in the worker's "
                       "log (\"upkeep failed\", \"releasing rows parked\"); without any, watch the count fall.")
    return Finding(
        check="pipeline-stuck", severity="emergency", category="watchdog",
        title="Alert pipeline stuck: " + "; ".join(parts),
        summary="Work is waiting longer than the watchdog allows: " + "; ".join(parts) + ".",
        recommended_action=" ".join(actions),
        window_seconds=max(settings.WATCHDOG_BATCH_PENDING_SECONDS, settings.WATCHDOG_DELIVERY_OVERDUE_SECONDS))


def check_heartbeat(now: datetime) -> Finding | None:
    age = figures.heartbeat_age(now)  # not the whole backlog: its delivery counts are check_pipeline's
    limit = settings.WORKER_HEARTBEAT_MAX_AGE
    if age is not None and age <= limit:
        return None
    seen = "never" if age is None else f"{age:.0f}s ago"
    return Finding(
        check="worker-heartbeat", severity="emergency", category="watchdog",
        title=f"No Celery worker heartbeat for more than {limit}s (last {seen})",
        summary=f"The newest worker heartbeat was {seen}; beat -> broker -> worker -> database is broken.",
        recommended_action="Start or restart the workers and beat; check the broker (Redis) and /api/v1/health.",
        window_seconds=limit)


CHECKS: tuple[Callable[[datetime], Finding | None], ...] = (
    check_delivery_success, check_downgrades, check_pipeline, check_heartbeat)


def raise_alert(finding: Finding, *, tenant: Tenant, now: datetime):
    """fire_alert for one finding, in the caller's transaction; returns the FireResult."""
    return fire_alert(
        tenant=tenant, plugin=None, rule_key=RULE_PREFIX + finding.check, rule_version=1,
        category=finding.category, severity=finding.severity, title=finding.title, summary=finding.summary,
        recommended_action=finding.recommended_action, group_key={"check": finding.check},
        labels={"source": "alert-center", "check": finding.check}, window_seconds=finding.window_seconds,
        occurrences=1, first_seen=now, last_seen=now, trace_ids=[], samples=[finding.summary],
        source_received_at=None, auto_resolve_seconds=AUTO_RESOLVE_SECONDS)


def run_system_checks(*, checks=CHECKS) -> dict[str, str]:
    """Run every check; returns {check function name: "ok" | "alert #<id>" | "error: ..."}."""
    now = clock.now()
    outcome: dict[str, str] = {}
    tenant = platform_tenant()
    for check in checks:
        name = check.__name__.removeprefix("check_")
        try:
            with transaction.atomic():
                finding = check(now)
                if finding is None:
                    outcome[name] = "ok"
                    continue
                result = raise_alert(finding, tenant=tenant, now=now)
            outcome[name] = f"alert #{result.alert.pk}"
            logger.warning("self-monitoring: %s", finding.title, extra={
                "check": finding.check, "alert_id": result.alert.pk, "tenant_id": tenant.pk,
                "severity": finding.severity, "new_alert": result.created})
        except Exception as exc:
            logger.exception("self-monitoring: check %s failed", name)
            outcome[name] = f"error: {type(exc).__name__}: {exc}"[:300]
    return outcome
