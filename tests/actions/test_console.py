"""The alert detail's ticket and action buttons, through real sessions and CSRF."""
from __future__ import annotations

import pytest

from apps.actions import config
from apps.actions.models import ActionRun

from tests.console.conftest import _empty_cache, login, make_console_user  # noqa: F401  (shared fixtures)

from .peers import Jira, Peer

pytestmark = pytest.mark.django_db


def test_operator_creates_a_ticket_and_runs_an_action_only_once_confirmed(login, tenant, make_alert):
    alert = make_alert()
    client = login("member")
    with Jira() as jira, Peer(lambda path, headers, body: (200, {"ok": True})) as runbook:
        config.bridge_save(tenant=tenant, actor=None, data={
            "kind": "jira", "base_url": jira.url, "auth": "basic", "username": "bot@acme.example",
            "secret": "jira-token", "project_key": "OPS"})
        config.action_save(tenant=tenant, actor=None, data={"name": "restart-checkout", "url": runbook.url})
        page = client.get(f"/alerts/{alert.pk}").content.decode()
        assert "Create ticket" in page and "Run restart-checkout" in page and 'name="confirm"' in page

        created = client.post(f"/alerts/{alert.pk}/ticket", follow=True).content.decode()
        assert "Ticket OPS-1 created." in created and f'href="{jira.url}/browse/OPS-1"' in created
        assert "Create ticket" not in created

        unconfirmed = client.post(f"/alerts/{alert.pk}/actions/restart-checkout", follow=True).content.decode()
        assert "requires confirmation" in unconfirmed and runbook.requests == []
        ran = client.post(f"/alerts/{alert.pk}/actions/restart-checkout", {"confirm": "yes"}, follow=True)
        assert "Action restart-checkout ran: HTTP 200" in ran.content.decode()
    assert len(runbook.requests) == 1 and len(jira.requests) == 1
    assert ActionRun.objects.get().actor_label == "member"


def test_viewers_cannot_and_posts_without_csrf_are_refused(login, tenant, make_alert):
    alert = make_alert()
    config.action_save(tenant=tenant, actor=None, data={"name": "restart", "url": "http://127.0.0.1:9/",
                                                        "requires_confirmation": False})
    viewer = login("member-viewer")
    assert "Run restart" not in viewer.get(f"/alerts/{alert.pk}").content.decode()
    assert viewer.post(f"/alerts/{alert.pk}/actions/restart").status_code == 403
    assert login("operator", csrf=True).post(f"/alerts/{alert.pk}/actions/restart").status_code == 403
    assert not ActionRun.objects.exists()
