"""Tenant isolation (404) and scopes (403) on every tickets/remediation endpoint."""
from __future__ import annotations

import pytest

from apps.actions import config
from apps.actions.models import RemediationAction, TicketBridge
from apps.alerts.models import Alert
from apps.core import clock

pytestmark = pytest.mark.django_db


@pytest.fixture
def theirs(other_tenant):
    """Another tenant's alert, bridge and action."""
    now = clock.now()
    alert = Alert.objects.create(tenant=other_tenant, fingerprint="fp-theirs", severity="critical", title="theirs",
                                 first_seen=now, last_seen=now, created_at=now, updated_at=now)
    bridge = config.bridge_save(tenant=other_tenant, actor=None, data={
        "kind": "jira", "base_url": "http://127.0.0.1:9/", "project_key": "GLX"})
    action, _ = config.action_save(tenant=other_tenant, actor=None, data={"name": "restart", "url": "http://127.0.0.1:9/"})
    return alert, bridge, action


def test_another_tenants_objects_are_404_everywhere(writer, theirs, make_alert):
    alert, bridge, action = theirs
    mine = make_alert()
    calls = [
        ("get", f"/api/v1/ticket-bridges/{bridge.pk}"), ("patch", f"/api/v1/ticket-bridges/{bridge.pk}"),
        ("delete", f"/api/v1/ticket-bridges/{bridge.pk}"), ("get", f"/api/v1/actions/{action.pk}"),
        ("patch", f"/api/v1/actions/{action.pk}"), ("delete", f"/api/v1/actions/{action.pk}"),
        ("get", f"/api/v1/alerts/{alert.pk}/ticket"), ("post", f"/api/v1/alerts/{alert.pk}/ticket"),
        ("post", f"/api/v1/alerts/{alert.pk}/actions/restart"), ("get", f"/api/v1/alerts/{alert.pk}/action-runs"),
        # my own alert with their action's name: the action does not exist for me
        ("post", f"/api/v1/alerts/{mine.pk}/actions/restart"),
    ]
    for method, url in calls:
        response = getattr(writer, method)(url, {"confirm": True}, format="json")
        assert response.status_code == 404, (method, url, response.content)
    assert writer.get("/api/v1/ticket-bridges").json() == []
    assert writer.get("/api/v1/actions").json() == []
    assert TicketBridge.objects.filter(pk=bridge.pk).exists() and RemediationAction.objects.filter(pk=action.pk).exists()


@pytest.mark.parametrize("scopes, method, url", [
    ("alerts:read,alerts:write", "get", "/api/v1/ticket-bridges"),
    ("actions:read", "post", "/api/v1/ticket-bridges"),
    ("actions:read", "patch", "/api/v1/ticket-bridges/{bridge}"),
    ("actions:read", "delete", "/api/v1/ticket-bridges/{bridge}"),
    ("alerts:write", "get", "/api/v1/actions"),
    ("actions:read", "post", "/api/v1/actions"),
    ("actions:read", "patch", "/api/v1/actions/{action}"),
    ("actions:read", "delete", "/api/v1/actions/{action}"),
    ("alerts:read,actions:write", "post", "/api/v1/alerts/{alert}/ticket"),
    ("actions:read", "get", "/api/v1/alerts/{alert}/ticket"),
    ("alerts:read,actions:write", "post", "/api/v1/alerts/{alert}/actions/restart"),
    ("actions:read", "get", "/api/v1/alerts/{alert}/action-runs"),
])
def test_a_token_without_the_scope_is_403(scopes, method, url, make_token, api, tenant, make_alert):
    bridge = config.bridge_save(tenant=tenant, actor=None, data={"kind": "jira", "base_url": "http://127.0.0.1:9/",
                                                                  "project_key": "OPS"})
    action, _ = config.action_save(tenant=tenant, actor=None, data={"name": "restart", "url": "http://127.0.0.1:9/"})
    alert = make_alert()
    client = api(make_token(tenant, scopes))
    response = getattr(client, method)(url.format(bridge=bridge.pk, action=action.pk, alert=alert.pk), {}, format="json")
    assert response.status_code == 403, response.content
    assert "lacks scope" in response.json()["error"]["message"]


def test_platform_tokens_name_the_tenant(make_token, api, tenant):
    platform = api(make_token(None))
    unnamed = platform.post("/api/v1/actions", {"name": "restart", "url": "http://127.0.0.1:9/"}, format="json")
    assert unnamed.status_code == 422 and "must name the tenant" in unnamed.json()["error"]["message"]
    named = platform.post("/api/v1/actions", {"tenant": "acme", "name": "restart", "url": "http://127.0.0.1:9/"},
                          format="json")
    assert named.status_code == 201 and named.json()["tenant"] == "acme"
    again = platform.post("/api/v1/actions", {"tenant": "acme", "name": "restart", "url": "http://127.0.0.1:9/"},
                          format="json")
    assert again.status_code == 409 and "already exists" in again.json()["error"]["message"]
