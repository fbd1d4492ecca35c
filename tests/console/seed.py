"""Realistic console data for the browser tests and screenshots: alerts of every severity and
state, a timeline, deliveries with attempts, and evidence lines."""
from __future__ import annotations

import importlib
import itertools
import uuid
from datetime import timedelta

from django.contrib.auth.models import Group, Permission

from apps.alerts.models import Alert, AlertState, TimelineEntry
from apps.core import clock
from apps.delivery.models import Delivery, DeliveryAttempt, WebhookEndpoint
from apps.ingest.models import EventRecord
from apps.tenants.models import Plugin

_n = itertools.count(1)

# The staff groups' grants, read from the data migrations that make them (alerts 0003, rules 0002),
# so the browser tests' roles stay what a migrated database gives them.
_GRANT_MIGRATIONS = {"alerts": "apps.alerts.migrations.0003_staff_group_permissions",
                     "rules": "apps.rules.migrations.0002_ruleset_version_and_permissions"}


def ensure_staff_groups() -> None:
    """Transactional tests flush the groups the data migrations made; put them back."""
    for app_label, module in _GRANT_MIGRATIONS.items():
        for name, codenames in importlib.import_module(module).GRANTS.items():
            group, _ = Group.objects.get_or_create(name=name)
            group.permissions.add(*Permission.objects.filter(content_type__app_label=app_label,
                                                             codename__in=codenames))


def alert(tenant, plugin, *, severity="critical", state=AlertState.OPEN, title="Checkout error burst",
          minutes_ago=5, count=25, rule="plugin-error-burst", summary="25 ERROR events in 5m") -> Alert:
    now = clock.now()
    created = now - timedelta(minutes=minutes_ago)
    n = next(_n)
    return Alert.objects.create(
        tenant=tenant, plugin=plugin, rule_key=rule, rule_version=1, category="error", fingerprint=f"seed-{uuid.uuid4().hex}",
        severity=severity, state=state, title=title, summary=summary, count=count, window_seconds=300,
        recommended_action="Roll back the plugin's latest release and check its upstream dependencies.",
        first_seen=created - timedelta(minutes=4), last_seen=created + timedelta(minutes=min(minutes_ago, 3)),
        created_at=created, updated_at=now, trace_ids=[f"tr-{n:04d}a9f", f"tr-{n:04d}c31"], labels={"env": "prod"},
        acknowledged_at=created + timedelta(minutes=2) if state in (AlertState.ACKNOWLEDGED, AlertState.RESOLVED) else None,
        resolved_at=created + timedelta(minutes=9) if state == AlertState.RESOLVED else None,
        escalation_level=1 if state == AlertState.ESCALATED else 0,
        acknowledged_by="alice" if state in (AlertState.ACKNOWLEDGED, AlertState.RESOLVED) else "",
    )


def rich_dataset(tenant, other_tenant=None) -> Alert:
    """About a dozen alerts over the last day; returns the richest one (timeline, deliveries, evidence)."""
    checkout = Plugin.objects.get_or_create(tenant=tenant, slug="checkout")[0]
    auth = Plugin.objects.get_or_create(tenant=tenant, slug="auth-gateway")[0]
    search = Plugin.objects.get_or_create(tenant=tenant, slug="search")[0]
    specs = [
        (auth, "emergency", AlertState.ESCALATED, "Brute-force login attempts on auth-gateway", 3, 140, "brute-force-login"),
        (checkout, "warning", AlertState.OPEN, "Slow queries on checkout", 12, 41, "plugin-error-burst"),
        (search, "info", AlertState.SUPPRESSED, "Search index rebuild warnings", 30, 8, "plugin-error-burst"),
        (auth, "critical", AlertState.ACKNOWLEDGED, "Security keyword in auth-gateway logs", 50, 3, "security-keywords"),
        (checkout, "critical", AlertState.RESOLVED, "Checkout fatal error", 180, 1, "fatal-error"),
        (search, "warning", AlertState.RESOLVED, "Search error burst", 400, 22, "plugin-error-burst"),
        (checkout, "critical", AlertState.RESOLVED, "Checkout error burst", 700, 31, "plugin-error-burst"),
        (auth, "warning", AlertState.RESOLVED, "Auth gateway error burst", 1000, 20, "plugin-error-burst"),
    ]
    for plugin, sev, state, title, ago, count, rule in specs:
        alert(tenant, plugin, severity=sev, state=state, title=title, minutes_ago=ago, count=count, rule=rule,
              summary=f"{count} matching events in 5m on {plugin.slug}")
    if other_tenant is not None:
        billing = Plugin.objects.get_or_create(tenant=other_tenant, slug="billing")[0]
        alert(other_tenant, billing, severity="critical", title="Billing error burst", minutes_ago=20)
    main = alert(tenant, checkout, severity="critical", title="Checkout error burst", minutes_ago=2, count=27)
    now = clock.now()
    Alert.objects.filter(pk=main.pk).update(delivery_state="DELIVERED")
    TimelineEntry.objects.create(alert=main, at=main.created_at, kind="created", actor_label="system",
                                 message="27 ERROR events in 5m (threshold 20)")
    TimelineEntry.objects.create(alert=main, at=main.created_at + timedelta(seconds=50), kind="occurrence",
                                 actor_label="system", message="+2 occurrences")
    endpoint = WebhookEndpoint.objects.create(tenant=tenant, url="https://hooks.acme.example/alerts",
                                              secret_encrypted="x", event_types=["alert.triggered"])
    delivery = Delivery.objects.create(tenant=tenant, alert=main, endpoint=endpoint, event_type="alert.triggered",
                                       msg_id=f"msg_{uuid.uuid4().hex}", body=b"{}", state="DELIVERED", attempts=2,
                                       created_at=main.created_at, expires_at=now + timedelta(days=1),
                                       delivered_at=now, finished_at=now)
    DeliveryAttempt.objects.create(delivery=delivery, number=1, channel="webhook", started_at=main.created_at + timedelta(seconds=1),
                                   latency_ms=10004, status_code=None, success=False, error="timed out after 10 s")
    DeliveryAttempt.objects.create(delivery=delivery, number=2, channel="webhook", started_at=main.created_at + timedelta(seconds=21),
                                   latency_ms=182, status_code=200, success=True)
    for i, (level, message) in enumerate([
        ("ERROR", "payment provider returned 502 for order 81723 token=[MASKED:token]"),
        ("ERROR", "upstream timeout after 3000ms calling inventory-svc"),
        ("FATAL", "worker crashed: connection pool exhausted (max=50)"),
        ("ERROR", "card [MASKED:card] declined, retrying"),
    ]):
        EventRecord.objects.create(tenant=tenant, plugin=checkout, ts=main.first_seen + timedelta(seconds=30 * (i + 1)),
                                   level=level, level_no=40 if level == "ERROR" else 50, message=message,
                                   trace_id=main.trace_ids[i % 2], rule_keys=["plugin-error-burst"], received_at=now)
    return main
