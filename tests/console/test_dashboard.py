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
