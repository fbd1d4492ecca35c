"""The dashboard shows the numbers of /api/v1/statistics (same selectors) and renders its chart."""
from __future__ import annotations

from datetime import timedelta

import pytest

from apps.alerts.models import AlertState
from apps.delivery.selectors import delivery_statistics

pytestmark = pytest.mark.django_db


def test_same_numbers_as_the_statistics_api(login, make_alert, frozen, api, make_token, other_tenant):
    now = frozen.current
    make_alert(severity="emergency", created_at=now - timedelta(hours=1))
    make_alert(state=AlertState.ACKNOWLEDGED, created_at=now - timedelta(hours=2),
               acknowledged_at=now - timedelta(hours=2) + timedelta(minutes=3))
    make_alert(state=AlertState.RESOLVED, created_at=now - timedelta(hours=5), acknowledged_at=now - timedelta(hours=5),
               resolved_at=now - timedelta(hours=4))
    make_alert(tenant=other_tenant, plugin=None, severity="warning", created_at=now - timedelta(hours=3))
    make_alert(created_at=now - timedelta(hours=30))  # outside the 24 h window
    resp = login("auditor").get("/dashboard")
    stats = resp.context["stats"]
    from_api = api(make_token(None, "alerts:read")).get("/api/v1/statistics?hours=24").json()
    delivery = stats.pop("delivery")
    api_delivery = from_api.pop("delivery")
    assert stats == from_api
    assert delivery == (api_delivery or delivery_statistics(tenant_ids=None, since=now - timedelta(hours=24)))
    body = resp.content.decode()
    assert 'data-fig="mtta">1m 30s<' in body  # (3 min + 0) / 2, formatted
    assert '<svg class="chart"' in body and body.count('class="sev-') >= 4
    assert 'data-active="emergency">1<' in body


def test_tenant_members_see_their_tenant_figures_only(login, make_alert, other_tenant):
    make_alert()
    make_alert(tenant=other_tenant, plugin=None)
    assert login("member").get("/dashboard").context["stats"]["alerts"]["total"] == 1
    assert login("operator").get("/dashboard?tenant=globex").context["stats"]["alerts"]["total"] == 1


def test_empty_dashboard_renders(login):
    body = login("operator").get("/dashboard").content.decode()
    assert "No alerts in the last 24 h." in body and "—" in body


def _rule(key: str, *, kind: str = "log", enabled: bool = True, category: str = "error"):
    from apps.core import clock
    from apps.rules.models import LogRule

    now = clock.now()
    return LogRule.objects.create(key=key, name=key, category=category, severity="warning", threshold_count=1,
                                  window_seconds=60, spec={}, created_at=now, updated_at=now, kind=kind,
                                  enabled=enabled)


def test_rule_tile_counts_enabled_log_and_metric_rules(login):
    _rule("errors"), _rule("auth-failures", category="security"), _rule("old", enabled=False)
    _rule("cpu-high", kind="threshold", category="metrics"), _rule("latency", kind="anomaly", category="metrics")
    _rule("gone-quiet", kind="absence", enabled=False)
    resp = login("member").get("/dashboard")
    assert resp.context["rules"] == {"log": 2, "metric": 2, "disabled": 2}
    body = resp.content.decode()
    assert 'data-fig="rules_enabled">4<' in body
    assert 'data-fig="rules_log">2<' in body and 'data-fig="rules_metric">2<' in body and "2 off" in body


def test_category_breakdown_counts_active_alerts_of_visible_tenants(login, make_alert, other_tenant):
    for _ in range(3):
        make_alert(category="error")
    make_alert(category="security", state=AlertState.ACKNOWLEDGED)
    make_alert(category="security", state=AlertState.RESOLVED)      # not active
    make_alert(category="capacity", tenant=other_tenant, plugin=None)  # not visible to acme's member
    resp = login("member").get("/dashboard")
    assert [(name, n) for name, n, _bar in resp.context["categories"]] == [("error", 3), ("security", 1)]
    body = resp.content.decode()
    assert 'href="/?state=active&amp;category=security"' in body and 'data-category="error">3<' in body
    assert 'aria-label="security: 1 active"' in body and "capacity" not in body
    staff = login("operator").get("/dashboard?tenant=globex")
    assert [(name, n) for name, n, _bar in staff.context["categories"]] == [("capacity", 1)]


def test_no_active_alerts_no_bars(login):
    assert "No active alerts." in login("operator").get("/dashboard").content.decode()
