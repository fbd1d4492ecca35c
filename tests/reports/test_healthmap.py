"""The health map: worst severity and counts per plugin, silence and stale states, a bounded
number of queries however many plugins, the API's tenant scope and the console page."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.alerts.models import AlertState, Silence
from apps.reports.healthmap import health_map
from apps.tenants.models import Plugin

pytestmark = pytest.mark.django_db


def _cells(**kwargs) -> dict[tuple[str, str | None], object]:
    return {(c.tenant, c.plugin): c for c in health_map(tenant_ids=None, **kwargs)}


def _silence(tenant, matchers: dict, now, hours: int = 2) -> Silence:
    return Silence.objects.create(tenant=tenant, matchers=matchers, starts_at=now - timedelta(minutes=1),
                                  ends_at=now + timedelta(hours=hours), reason="maintenance")


def test_worst_active_severity_and_counts_by_state(frozen, tenant, plugin, second_plugin, make_alert, make_record):
    now = frozen()
    make_alert(severity="warning", state=AlertState.OPEN)
    make_alert(severity="critical", state=AlertState.ACKNOWLEDGED)
    make_alert(severity="warning", state=AlertState.ESCALATED)
    make_alert(severity="emergency", state=AlertState.RESOLVED)   # not active: ignored
    make_alert(plugin=None, severity="info", state=AlertState.OPEN)  # a tenant-level alert
    make_record(tenant, plugin, now - timedelta(minutes=3), "boom")
    make_record(tenant, plugin, now - timedelta(minutes=1), "boom again")

    cells = _cells(now=now)
    checkout = cells[("acme", "checkout")]
    assert checkout.worst_severity == "critical"
    assert checkout.by_state == {"OPEN": 1, "ACKNOWLEDGED": 1, "ESCALATED": 1, "SUPPRESSED": 0}
    assert checkout.active == 3
    assert checkout.last_event_at == now - timedelta(minutes=1) and not checkout.stale
    payments = cells[("acme", "payments")]
    assert payments.worst_severity is None and payments.active == 0
    assert cells[("acme", None)].worst_severity == "info"


def test_stale_after_the_configured_quiet_time(frozen, settings, tenant, plugin, second_plugin, make_record):
    settings.HEALTH_MAP_STALE_SECONDS = 600
    now = frozen()
    Plugin.objects.filter(pk__in=[plugin.pk, second_plugin.pk]).update(created_at=now - timedelta(days=1))
    make_record(tenant, plugin, now - timedelta(minutes=11), "last words")
    make_record(tenant, second_plugin, now - timedelta(minutes=9), "still here")
    fresh = Plugin.objects.create(tenant=tenant, slug="brand-new")
    Plugin.objects.filter(pk=fresh.pk).update(created_at=now - timedelta(minutes=1))
    cells = _cells(now=now)
    assert cells[("acme", "checkout")].stale
    assert not cells[("acme", "payments")].stale
    assert not cells[("acme", "brand-new")].stale and cells[("acme", "brand-new")].last_event_at is None
    assert _cells(now=now + timedelta(minutes=10))[("acme", "brand-new")].stale  # never reported


def test_silence_states(frozen, tenant, plugin, second_plugin, other_tenant):
    now = frozen()
    third = Plugin.objects.create(tenant=tenant, slug="search")
    globex = Plugin.objects.create(tenant=other_tenant, slug="checkout")
    whole = _silence(tenant, {"plugin": "checkout"}, now, hours=3)
    _silence(tenant, {"plugin": "payments", "severity": "warning"}, now)
    _silence(other_tenant, {}, now)  # all of globex
    Silence.objects.create(tenant=tenant, matchers={"plugin": "search"}, starts_at=now - timedelta(hours=2),
                           ends_at=now - timedelta(hours=1), reason="over")
    cells = _cells(now=now)
    assert (cells[("acme", "checkout")].silence, cells[("acme", "checkout")].silenced_until) == ("silenced", whole.ends_at)
    assert cells[("acme", "payments")].silence == "partial"
    assert cells[("acme", third.slug)].silence == "none"
    assert cells[("globex", globex.slug)].silence == "silenced"


def test_query_count_is_bounded_with_a_thousand_plugins(frozen, tenant, other_tenant, make_alert, make_record):
    now = frozen()
    plugins = Plugin.objects.bulk_create(
        [Plugin(tenant=tenant if i % 2 else other_tenant, slug=f"p{i:04d}") for i in range(1000)])
    for p in plugins[:50]:
        make_alert(tenant=p.tenant, plugin=p, severity="warning")
        make_record(p.tenant, p, now - timedelta(minutes=1), "boom")
    make_alert(tenant=tenant, plugin=None)
    _silence(tenant, {"plugin": "p0001"}, now)

    with CaptureQueriesContext(connection) as queries:
        cells = health_map(tenant_ids=None, now=now)
    assert len(cells) == 1002  # the 1000, make_alert's acme/checkout, acme's plugin-less row
    assert len(queries) <= 4, [q["sql"][:120] for q in queries]
    assert sum(1 for c in cells if c.active) == 51 and sum(1 for c in cells if c.silence == "silenced") == 1


def test_api_is_tenant_scoped(frozen, tenant, plugin, other_tenant, make_alert, api, make_token):
    Plugin.objects.create(tenant=other_tenant, slug="billing")
    make_alert(severity="critical")
    resp = api(make_token(tenant, "alerts:read")).get("/api/v1/health/map")
    assert resp.status_code == 200
    body = resp.json()
    assert body["stale_after_seconds"] == 900
    assert [(c["tenant"], c["plugin"], c["worst_severity"], c["by_state"]["OPEN"]) for c in body["plugins"]] == [
        ("acme", "checkout", "critical", 1)]
    assert api(make_token(tenant, "alerts:read")).get("/api/v1/health/map?tenant=globex").status_code == 404
    everyone = api(make_token(None, "alerts:read")).get("/api/v1/health/map?tenant=globex").json()
    assert [(c["tenant"], c["plugin"]) for c in everyone["plugins"]] == [("globex", "billing")]
    assert api(make_token(tenant, "logs:write")).get("/api/v1/health/map").status_code == 403


def test_console_page_for_operator_and_member(frozen, tenant, plugin, other_tenant, make_alert, login):
    Plugin.objects.create(tenant=other_tenant, slug="billing")
    make_alert(severity="emergency")

    operator_client = login("operator")
    operator = operator_client.get("/health-map")
    assert operator.status_code == 200
    html = operator.content.decode()
    assert 'id="hm-acme"' in html and 'id="hm-globex"' in html
    assert 'class="sevrow-emergency"' in html and "sev-emergency" in html  # colour + shape + text

    member = login("member").get("/health-map")
    assert member.status_code == 200
    html = member.content.decode()
    assert 'id="hm-acme"' in html and "globex" not in html and "billing" not in html

    only_problems = operator_client.get("/health-map?show=problems")
    html = only_problems.content.decode()
    assert 'data-plugin="checkout"' in html and 'data-plugin="billing"' not in html
