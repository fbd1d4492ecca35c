"""Staff roles (group permissions from migration 0003), the console helpers, and admin actions."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from apps.alerts.models import AlertState, TimelineEntry
from apps.alerts.roles import can_operate, visible_tenant_ids
from apps.audit.models import AuditEvent
from apps.tenants.models import TenantMembership

pytestmark = pytest.mark.django_db


def test_group_permissions(make_user):
    operator = make_user("op", staff=True, groups=("operators",))
    governance = make_user("gov", staff=True, groups=("governance",))
    auditor = make_user("aud", staff=True, groups=("auditors",))
    assert operator.has_perms(["alerts.change_alert", "alerts.add_silence", "alerts.change_silence", "alerts.view_alert"])
    assert not operator.has_perm("alerts.delete_alert")
    assert governance.has_perms(["alerts.view_alert", "alerts.change_escalationpolicy"])
    assert not governance.has_perm("alerts.change_alert")
    assert auditor.has_perms(["alerts.view_alert", "alerts.view_timelineentry", "alerts.view_silence"])
    assert not any(auditor.has_perm(f"alerts.{p}") for p in ("change_alert", "add_silence", "change_escalationpolicy"))
    assert [can_operate(u) for u in (operator, governance, auditor)] == [True, False, False]


def test_tenant_members(make_user, tenant, other_tenant):
    viewer, worker = make_user("viewer"), make_user("worker")
    TenantMembership.objects.create(user=viewer, tenant=tenant, role="viewer")
    TenantMembership.objects.create(user=worker, tenant=tenant, role="operator")
    assert (can_operate(viewer, tenant.pk), can_operate(worker, tenant.pk), can_operate(worker, other_tenant.pk)) == (
        False, True, False)
    assert visible_tenant_ids(worker) == [tenant.pk]
    assert visible_tenant_ids(make_user("staffer", staff=True)) is None
    assert visible_tenant_ids(make_user("nobody")) == []


def _admin_client(client, user):
    client.force_login(user)
    return client


def test_admin_actions_call_the_services(client, make_user, make_alert):
    operator = make_user("op", staff=True, groups=("operators",))
    open_alert, done = make_alert(), make_alert(state=AlertState.RESOLVED)
    c = _admin_client(client, operator)
    assert c.get("/admin/alerts/alert/").status_code == 200
    assert c.get(f"/admin/alerts/alert/{open_alert.pk}/change/").status_code == 200
    resp = c.post("/admin/alerts/alert/", {"action": "acknowledge", "_selected_action": [open_alert.pk, done.pk]},
                  follow=True)
    assert resp.status_code == 200
    open_alert.refresh_from_db()
    assert open_alert.state == AlertState.ACKNOWLEDGED and open_alert.acknowledged_by == "op"
    assert TimelineEntry.objects.get(alert=open_alert).actor_user == operator
    assert AuditEvent.objects.get(action="alert.acknowledged").actor_label == "op"
    messages = [str(m) for m in resp.context["messages"]]
    assert "Acknowledged 1 alert(s)." in messages and any("is RESOLVED; cannot acknowledge" in m for m in messages)


def test_auditors_cannot_act_in_the_admin(client, make_user, make_alert):
    auditor = make_user("aud", staff=True, groups=("auditors",))
    alert = make_alert()
    c = _admin_client(client, auditor)
    assert c.get("/admin/alerts/alert/").status_code == 200
    c.post("/admin/alerts/alert/", {"action": "acknowledge", "_selected_action": [alert.pk]})
    alert.refresh_from_db()
    assert alert.state == AlertState.OPEN
    assert c.get("/admin/alerts/silence/add/").status_code == 403


def test_superuser_sees_every_alerts_admin_page(client, make_alert):
    admin = User.objects.create_superuser("root", "root@example.com", "x" * 12)
    alert = make_alert()
    c = _admin_client(client, admin)
    for url in ["/admin/alerts/alert/", f"/admin/alerts/alert/{alert.pk}/change/", "/admin/alerts/silence/",
                "/admin/alerts/silence/add/", "/admin/alerts/escalationpolicy/", "/admin/alerts/escalationpolicy/add/"]:
        assert c.get(url).status_code == 200, url
