"""Admin pages: the API's checks apply, secrets are write-only, saves are audited."""
from __future__ import annotations

import pytest

from apps.actions.models import RemediationAction, TicketBridge
from apps.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def bridge_form(tenant, **overrides) -> dict:
    data = {"tenant": tenant.pk, "kind": "jira", "base_url": "http://127.0.0.1:9/", "auth": "bearer",
            "username": "", "secret": "tok-admin-1", "project_key": "OPS", "issue_type": "Bug", "priorities": "{}",
            "labels": "[]", "transition_id": "", "body_template": "", "key_path": "", "url_path": "",
            "comment_url_template": "", "auto_create_severities": '["critical"]', "enabled": "on"}
    data.update(overrides)
    return data


def test_admin_refuses_an_unsafe_url_and_saves_a_good_bridge_audited(admin_client, tenant):
    refused = admin_client.post("/admin/actions/ticketbridge/add/", bridge_form(tenant, base_url="http://10.9.9.9/"))
    assert refused.status_code == 200 and "10.9.9.9" in refused.content.decode()
    assert not TicketBridge.objects.exists()

    saved = admin_client.post("/admin/actions/ticketbridge/add/", bridge_form(tenant))
    assert saved.status_code == 302, saved.content.decode()[:2000]
    bridge = TicketBridge.objects.get()
    assert bridge.auto_create_severities == ["critical"] and "tok-admin-1" not in bridge.secret_encrypted
    assert AuditEvent.objects.filter(action="ticket_bridge.created", actor_label="admin").exists()
    page = admin_client.get(f"/admin/actions/ticketbridge/{bridge.pk}/change/").content.decode()
    assert "tok-admin-1" not in page and bridge.secret_encrypted not in page


def test_admin_creates_an_action_and_shows_its_secret_once(admin_client, tenant):
    response = admin_client.post("/admin/actions/remediationaction/add/", {
        "tenant": tenant.pk, "name": "restart", "description": "", "url": "http://127.0.0.1:9/",
        "body_template": '{"alert": {{ alert.id }}}', "allowed_severities": "[]", "requires_confirmation": "on",
        "enabled": "on", "auto_run_severities": "[]", "max_runs_per_hour": 10}, follow=True)
    assert response.status_code == 200
    assert "Signing secret (shown once" in response.content.decode()
    assert RemediationAction.objects.filter(name="restart").exists()
    assert AuditEvent.objects.filter(action="action.created").exists()
