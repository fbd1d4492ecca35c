"""Alert actions: each one's effect and message, conflicts as messages, roles, tenants, CSRF."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from apps.alerts.models import AlertState, TimelineEntry
from apps.audit.models import AuditEvent
from apps.tenants.models import FallbackContact

pytestmark = pytest.mark.django_db


def messages_of(resp) -> list[str]:
    return [str(m) for m in resp.context["messages"]]


def test_acknowledge_redirects_back_with_a_message(login, make_alert):
    alert = make_alert()
    resp = login("operator").post(f"/alerts/{alert.pk}/ack", {"note": "on it"}, follow=True)
    assert resp.redirect_chain == [(f"/alerts/{alert.pk}", 302)]
    assert messages_of(resp) == [f"Acknowledged alert #{alert.pk}."]
    alert.refresh_from_db()
    assert alert.state == AlertState.ACKNOWLEDGED and alert.acknowledged_by == "operator"
    assert AuditEvent.objects.get(action="alert.acknowledged").actor_label == "operator"


def test_someone_else_acknowledged_first_shows_the_conflict(login, make_alert):
    alert = make_alert(state=AlertState.ACKNOWLEDGED)
    resp = login("operator").post(f"/alerts/{alert.pk}/ack", follow=True)
    assert messages_of(resp) == [f"alert {alert.pk} is ACKNOWLEDGED; cannot acknowledge"]


def test_resolve_with_note_assign_note_suppress_unsuppress(login, make_alert, make_console_user):
    alert = make_alert()
    client = login("operator")
    bob = make_console_user("auditor", "bob")
    assert messages_of(client.post(f"/alerts/{alert.pk}/assign", {"assignee": "me"}, follow=True)) == [
        f"Alert #{alert.pk} assigned to you."]
    assert messages_of(client.post(f"/alerts/{alert.pk}/assign", {"assignee": "bob"}, follow=True)) == [
        f"Alert #{alert.pk} assigned to bob."]
    assert messages_of(client.post(f"/alerts/{alert.pk}/assign", {"assignee": "ghost"}, follow=True)) == [
        "no active user 'ghost'"]
    assert messages_of(client.post(f"/alerts/{alert.pk}/note", {"text": "rolled back 4.2"}, follow=True)) == [
        f"Note added to alert #{alert.pk}."]
    assert "Alert #%d unchanged: text: This field is required." % alert.pk in messages_of(
        client.post(f"/alerts/{alert.pk}/note", {"text": ""}, follow=True))
    resp = client.post(f"/alerts/{alert.pk}/suppress", {"duration": "2h", "reason": "deploy"}, follow=True)
    assert messages_of(resp)[0].startswith(f"Alert #{alert.pk} suppressed until ")
    assert "duration" in messages_of(client.post(f"/alerts/{alert.pk}/suppress", {"duration": "soon", "reason": "x"},
                                                 follow=True))[0]
    assert messages_of(client.post(f"/alerts/{alert.pk}/unsuppress", follow=True)) == [f"Alert #{alert.pk} is open again."]
    resp = client.post(f"/alerts/{alert.pk}/resolve", {"note": "fixed upstream"}, follow=True)
    assert messages_of(resp) == [f"Resolved alert #{alert.pk}."]
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED and alert.assignee == bob
    kinds = list(TimelineEntry.objects.filter(alert=alert).values_list("kind", "message"))
    assert ("note", "rolled back 4.2") in kinds and ("resolved", "fixed upstream") in kinds
    assert "fixed upstream" in client.get(f"/alerts/{alert.pk}").content.decode()


def test_next_keeps_the_operator_where_they_were_but_never_offsite(login, make_alert):
    alert, other = make_alert(), make_alert()
    client = login("operator")
    assert client.post(f"/alerts/{alert.pk}/ack", {"next": "/?severity=critical"})["Location"] == "/?severity=critical"
    assert client.post(f"/alerts/{other.pk}/ack", {"next": "https://evil.example/"})["Location"] == f"/alerts/{other.pk}"


def test_fallback_email_now(login, make_alert, tenant, mailoutbox, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    alert = make_alert()
    client = login("operator")
    resp = client.post(f"/alerts/{alert.pk}/fallback", {"channel": "email"}, follow=True)
    assert messages_of(resp) == [f"tenant {tenant.slug} has no active email fallback contact"]
    FallbackContact.objects.create(tenant=tenant, kind="email", value="oncall@acme.example")
    resp = client.post(f"/alerts/{alert.pk}/fallback", {"channel": "email"}, follow=True)
    assert messages_of(resp) == [f"Fallback email for alert #{alert.pk} to oncall@acme.example: sent."]
    assert len(mailoutbox) == 1 and mailoutbox[0].to == ["oncall@acme.example"]


@pytest.mark.parametrize("role", ["auditor", "governance", "member-viewer"])
def test_read_only_roles_cannot_act(login, make_alert, role):
    alert = make_alert()
    client = login(role)
    for action, data in (("ack", {}), ("resolve", {}), ("note", {"text": "x"}), ("assign", {"assignee": "me"}),
                         ("fallback", {"channel": "email"})):
        assert client.post(f"/alerts/{alert.pk}/{action}", data).status_code == 403, action
    assert client.post("/alerts/bulk-ack", {"ids": [alert.pk]}).status_code == 403
    alert.refresh_from_db()
    assert alert.state == AlertState.OPEN


def test_tenant_operators_work_their_tenant_only(login, make_alert, other_tenant):
    mine, theirs = make_alert(), make_alert(tenant=other_tenant, plugin=None)
    client = login("member")
    assert client.post(f"/alerts/{theirs.pk}/ack").status_code == 404
    assert client.post(f"/alerts/{mine.pk}/ack").status_code == 302
    resp = client.post("/alerts/bulk-ack", {"ids": [theirs.pk]}, follow=True)
    assert "1 ticked alert(s) were not acknowledged" in messages_of(resp)[-1]
    theirs.refresh_from_db()
    assert theirs.state == AlertState.OPEN


def test_actions_enforce_csrf(login, make_alert):
    alert = make_alert()
    client = login("operator", csrf=True)
    for url in (f"/alerts/{alert.pk}/ack", f"/alerts/{alert.pk}/resolve", f"/alerts/{alert.pk}/note",
                "/alerts/bulk-ack", "/silences/new", "/logout/"):
        assert client.post(url, {"ids": [alert.pk], "text": "x"}).status_code == 403, url
    token = client.get(f"/alerts/{alert.pk}").cookies["csrftoken"].value
    assert client.post(f"/alerts/{alert.pk}/ack", {"csrfmiddlewaretoken": token}).status_code == 302


def test_actions_are_post_only(login, make_alert):
    alert = make_alert()
    assert login("operator").get(f"/alerts/{alert.pk}/ack").status_code == 405


def test_bulk_acknowledge(login, make_alert):
    a, b = make_alert(), make_alert(state=AlertState.ESCALATED)
    done = make_alert(state=AlertState.RESOLVED)
    client = login("operator")
    resp = client.post("/alerts/bulk-ack", {"ids": [a.pk, b.pk, done.pk], "next": "/?state=active"}, follow=True)
    assert resp.redirect_chain == [("/?state=active", 302)]
    assert messages_of(resp) == [f"Acknowledged 2 alert(s): #{a.pk}, #{b.pk}.",
                                 "1 ticked alert(s) were not acknowledged: already acknowledged, resolved or "
                                 "suppressed, or not yours to work."]
    assert AuditEvent.objects.filter(action="alert.acknowledged").count() == 2
    assert messages_of(client.post("/alerts/bulk-ack", {}, follow=True)) == ["Tick at least one alert to acknowledge."]
    assert User.objects.get(username="operator").pk  # the actor exists; the timeline names them
    assert TimelineEntry.objects.filter(alert=a, kind="acknowledged", actor_label="operator").exists()
