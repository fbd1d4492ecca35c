"""Admin edits of webhook endpoints: the API's validation (SSRF check at registration) and its audit rows."""
from __future__ import annotations

import json
from ipaddress import ip_network

import pytest
from django.contrib.auth import get_user_model

from apps.audit.models import AuditEvent
from apps.delivery.models import WebhookEndpoint
from apps.delivery.services import create_endpoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def root(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "a-long-password")
    client.force_login(user)
    return client


@pytest.fixture
def endpoint(settings, tenant):
    settings.WEBHOOK_ALLOWED_NETWORKS = [ip_network("127.0.0.0/8")]
    ep, _ = create_endpoint(tenant=tenant, url="http://127.0.0.1:9/hook")
    return ep


def change(root, endpoint, **kw):
    data = {"url": endpoint.url, "description": endpoint.description, "min_severity": endpoint.min_severity,
            "event_types": json.dumps(endpoint.event_types), "enabled": "on" if endpoint.enabled else ""}
    data.update(kw)
    return root.post(f"/admin/delivery/webhookendpoint/{endpoint.pk}/change/", data)


@pytest.mark.parametrize("url, reason", [
    ("https://169.254.169.254/latest/meta-data/", "link-local"),
    ("https://10.0.0.5/hook", "private"),
    ("https://[fec0::1]/hook", "site-local"),
    ("http://93.184.216.34/hook", "http"),
])
def test_admin_refuses_urls_the_api_refuses(root, endpoint, settings, url, reason):
    settings.WEBHOOK_ALLOWED_NETWORKS = []
    resp = change(root, endpoint, url=url)
    assert resp.status_code == 200  # the form again, with the error next to the field
    [error] = resp.context["adminform"].form.errors["url"]
    assert error.startswith("url: ") and reason in error
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).url == "http://127.0.0.1:9/hook"
    assert not AuditEvent.objects.filter(action="webhook.updated").exists()


def test_admin_refuses_unknown_event_types(root, endpoint):
    resp = change(root, endpoint, event_types=json.dumps(["alert.exploded"]))
    assert resp.status_code == 200
    assert "unknown alert.exploded" in resp.context["adminform"].form.errors["event_types"][0]


def test_admin_change_is_audited_like_the_api(root, endpoint):
    resp = change(root, endpoint, url="http://127.0.0.2:9/new", description="ops", enabled="")
    assert resp.status_code == 302, resp.context and resp.context["adminform"].form.errors
    endpoint.refresh_from_db()
    assert (endpoint.url, endpoint.description, endpoint.enabled) == ("http://127.0.0.2:9/new", "ops", False)
    [event] = AuditEvent.objects.filter(action="webhook.updated")
    assert (event.actor_label, event.target_id, event.tenant_id) == ("root", str(endpoint.pk), endpoint.tenant_id)
    assert event.data == {"url": {"from": "http://127.0.0.1:9/hook", "to": "http://127.0.0.2:9/new"},
                          "description": {"from": "", "to": "ops"}, "enabled": {"from": "True", "to": "False"}}


def test_admin_delete_is_audited(root, endpoint):
    resp = root.post(f"/admin/delivery/webhookendpoint/{endpoint.pk}/delete/", {"post": "yes"})
    assert resp.status_code == 302
    assert not WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()
    [event] = AuditEvent.objects.filter(action="webhook.deleted")
    assert event.actor_label == "root" and event.data == {"url": "http://127.0.0.1:9/hook"}


def test_admin_bulk_delete_is_audited(root, endpoint, tenant):
    other, _ = create_endpoint(tenant=tenant, url="http://127.0.0.3:9/hook")
    resp = root.post("/admin/delivery/webhookendpoint/",
                     {"action": "delete_selected", "_selected_action": [endpoint.pk, other.pk], "post": "yes"})
    assert resp.status_code == 302
    assert sorted(AuditEvent.objects.filter(action="webhook.deleted").values_list("target_id", flat=True)) == sorted(
        [str(endpoint.pk), str(other.pk)])
