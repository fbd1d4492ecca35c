"""Tickets against a real Jira-shaped server and a generic JSON tracker on 127.0.0.1."""
from __future__ import annotations

import json

import pytest
from django.utils import timezone

from apps.actions import tickets
from apps.actions.models import Ticket, TicketBridge
from apps.alerts.models import Alert, AlertState, TimelineEntry
from apps.alerts.payload import alert_payload
from apps.audit.models import AuditEvent

from .peers import Jira, Peer

pytestmark = pytest.mark.django_db


def jira_bridge(writer, jira, **extra) -> dict:
    body = {"kind": "jira", "base_url": jira.url, "auth": "basic", "username": "bot@acme.example",
            "secret": "jira-token", "project_key": "OPS", "issue_type": "Incident", "labels": ["checkout team"],
            **extra}
    response = writer.post("/api/v1/ticket-bridges", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_jira_gets_the_ticket_and_after_an_api_resolve_the_comment_and_transition(writer, make_alert):
    alert = make_alert(severity="emergency")
    with Jira() as jira:
        jira_bridge(writer, jira, close_on_resolve=True, transition_id="31")
        created = writer.post(f"/api/v1/alerts/{alert.pk}/ticket", format="json")
        assert created.status_code == 201, created.content
        assert created.json()["key"] == "OPS-1" and created.json()["state"] == "open"

        fields = jira.json(0)["fields"]
        assert jira.paths() == ["/rest/api/2/issue"]
        assert fields["project"] == {"key": "OPS"} and fields["issuetype"] == {"name": "Incident"}
        assert fields["summary"] == f"[emergency] {alert.title}"
        assert fields["priority"] == {"name": "Highest"}
        assert fields["labels"] == ["checkout-team", "alertcenter", "severity-emergency"]
        assert "25 errors in 5m" in fields["description"] and f"/alerts/{alert.pk}" in fields["description"]

        alert.refresh_from_db()
        assert (alert.ticket_key, alert.ticket_url) == ("OPS-1", f"{jira.url}/browse/OPS-1")
        assert alert_payload(Alert.objects.get(pk=alert.pk))["ticket"] == {"key": "OPS-1",
                                                                           "url": f"{jira.url}/browse/OPS-1"}
        assert TimelineEntry.objects.filter(alert=alert, data__event="ticket.created", message="Ticket OPS-1 created").exists()
        assert AuditEvent.objects.filter(action="alert.ticket_created", target_id=str(alert.pk),
                                         data__ticket="OPS-1").exists()

        resolved = writer.post(f"/api/v1/alerts/{alert.pk}/resolve",
                               {"reason": "regression passed", "ticket": "OPS-1"}, format="json")
        assert resolved.status_code == 200, resolved.content
        assert tickets.sync_resolved_due() == 1
        assert tickets.sync_resolved_due() == 0  # said once, not on every sweep

    assert jira.issues["OPS-1"]["comments"] == ["Resolved by token:test: regression passed"]
    assert jira.issues["OPS-1"]["transitions"] == ["31"]
    assert jira.paths()[1:] == ["/rest/api/2/issue/OPS-1/comment", "/rest/api/2/issue/OPS-1/transitions"]
    ticket = Ticket.objects.get(alert=alert)
    assert ticket.state == Ticket.State.CLOSED and ticket.last_error == ""
    assert TimelineEntry.objects.filter(alert=alert, kind="resolved", message="regression passed").exists()
    line = TimelineEntry.objects.get(alert=alert, data__event="ticket.resolved")
    assert line.message == "Ticket OPS-1: commented and transitioned (closed)"
    assert AuditEvent.objects.filter(action="alert.ticket_resolved", target_id=str(alert.pk)).exists()


def test_resolve_naming_another_ticket_is_refused_and_nothing_changes(writer, make_alert):
    alert = make_alert(ticket_key="OPS-7")
    bare = make_alert()
    wrong = writer.post(f"/api/v1/alerts/{alert.pk}/resolve", {"reason": "passed", "ticket": "OPS-8"}, format="json")
    assert wrong.status_code == 409
    assert "'OPS-8' does not match" in wrong.json()["error"]["message"] and "OPS-7" in wrong.json()["error"]["message"]
    none = writer.post(f"/api/v1/alerts/{bare.pk}/resolve", {"ticket": "OPS-7"}, format="json")
    assert none.status_code == 409 and "has no ticket" in none.json()["error"]["message"]
    assert set(Alert.objects.filter(pk__in=[alert.pk, bare.pk]).values_list("state", flat=True)) == {AlertState.OPEN}


def test_sweep_creates_tickets_for_the_configured_severities_only_once(writer, make_alert):
    with Jira() as jira:
        jira_bridge(writer, jira, auto_create_severities=["critical", "emergency"])
        critical, warning = make_alert(severity="critical"), make_alert(severity="warning")
        assert tickets.create_due() == 1
        assert tickets.create_due() == 0
    assert jira.paths() == ["/rest/api/2/issue"]
    assert Alert.objects.get(pk=critical.pk).ticket_key == "OPS-1"
    assert not Ticket.objects.filter(alert=warning).exists()


def test_auto_resolve_of_a_ticketed_alert_is_commented_too(writer, make_alert):
    from apps.alerts import services

    with Jira() as jira:
        jira_bridge(writer, jira)
        alert = make_alert()
        assert writer.post(f"/api/v1/alerts/{alert.pk}/ticket").status_code == 201
        services.alert_resolve(alert_id=alert.pk, actor=None, note="auto-resolved: no matching events for 15m")
        assert tickets.sync_resolved_due() == 1
    assert jira.issues["OPS-1"]["comments"] == ["Resolved by system: auto-resolved: no matching events for 15m"]
    assert jira.issues["OPS-1"]["transitions"] == []
    assert Ticket.objects.get(alert=alert).state == Ticket.State.OPEN  # commented, not closed (not configured)


def test_jira_400_and_401_are_recorded_with_the_trackers_words(writer, make_alert, tenant):
    alert = make_alert()
    with Jira(project="SEC") as jira:
        jira_bridge(writer, jira)  # project OPS: Jira knows only SEC
        refused = writer.post(f"/api/v1/alerts/{alert.pk}/ticket")
        assert refused.status_code == 502
        assert "HTTP 400: project: valid project is required" in refused.json()["error"]["message"]
        ticket = Ticket.objects.get(alert=alert)
        assert ticket.state == Ticket.State.FAILED and ticket.attempts == 1
        assert TimelineEntry.objects.filter(alert=alert, data__event="ticket.failed").exists()

        bridge = TicketBridge.objects.get(tenant=tenant)
        assert writer.patch(f"/api/v1/ticket-bridges/{bridge.pk}", {"project_key": "SEC", "secret": "wrong"},
                            format="json").status_code == 200
        unauthorised = writer.post(f"/api/v1/alerts/{alert.pk}/ticket")
        assert unauthorised.status_code == 502 and "HTTP 401: You are not authenticated" in unauthorised.json()["error"]["message"]

        writer.patch(f"/api/v1/ticket-bridges/{bridge.pk}", {"secret": "jira-token"}, format="json")
        assert writer.post(f"/api/v1/alerts/{alert.pk}/ticket").status_code == 201
        again = writer.post(f"/api/v1/alerts/{alert.pk}/ticket")
        assert again.status_code == 409 and "already has ticket SEC-1" in again.json()["error"]["message"]
    assert Alert.objects.get(pk=alert.pk).ticket_key == "SEC-1"


def test_generic_tracker_with_a_template_and_json_paths(writer, make_alert):
    def answer(path, headers, body):
        if path == "/tickets":
            return 200, {"data": {"ticket": {"id": "INC-42", "link": "https://tracker.example/INC-42"}}}
        return 201, {"ok": True}

    alert = make_alert(severity="warning")
    with Peer(answer) as tracker:
        bridge = writer.post("/api/v1/ticket-bridges", {
            "kind": "generic", "base_url": f"{tracker.url}/tickets", "auth": "bearer", "secret": "s3cret",
            "body_template": '{"title": {{ alert.title|tojson }}, "sev": "{{ alert.severity }}", "labels": {{ alert.labels|tojson }}}',
            "key_path": "data.ticket.id", "url_path": "data.ticket.link",
            "comment_url_template": tracker.url + "/tickets/{{ key }}/comments"}, format="json")
        assert bridge.status_code == 201, bridge.content
        assert writer.post(f"/api/v1/alerts/{alert.pk}/ticket").status_code == 201
        writer.post(f"/api/v1/alerts/{alert.pk}/resolve", {"reason": "rolled back"}, format="json")
        assert tickets.sync_resolved_due() == 1
    assert tracker.json(0) == {"title": alert.title, "sev": "warning", "labels": {}}
    assert tracker.requests[0]["headers"]["authorization"] == "Bearer s3cret"
    assert tracker.paths() == ["/tickets", "/tickets/INC-42/comments"]
    assert tracker.json(1) == {"body": "Resolved by token:test: rolled back"}
    alert.refresh_from_db()
    assert (alert.ticket_key, alert.ticket_url) == ("INC-42", "https://tracker.example/INC-42")


def test_bridge_refusals_name_the_field_and_secrets_never_come_back(writer, tenant):
    unsafe = writer.post("/api/v1/ticket-bridges", {"kind": "jira", "base_url": "http://10.0.0.5/", "project_key": "OPS"},
                         format="json")
    assert unsafe.status_code == 422 and unsafe.json()["error"]["code"] == "unsafe_url"
    assert "10.0.0.5" in unsafe.json()["error"]["message"]
    bad_template = writer.post("/api/v1/ticket-bridges", {"kind": "generic", "base_url": "http://127.0.0.1:9/",
                                                          "body_template": '{"t": {{ alert.title }}}'}, format="json")
    assert bad_template.status_code == 422 and "body_template" in bad_template.json()["error"]["message"]
    no_token = writer.post("/api/v1/ticket-bridges", {"kind": "jira", "base_url": "http://127.0.0.1:9/",
                                                      "project_key": "OPS", "auth": "bearer"}, format="json")
    assert no_token.status_code == 422 and no_token.json()["error"]["message"].startswith("secret:")
    assert not TicketBridge.objects.exists()

    made = writer.post("/api/v1/ticket-bridges", {"kind": "jira", "base_url": "http://127.0.0.1:9/", "project_key": "OPS",
                                                   "auth": "bearer", "secret": "tok-123456"}, format="json")
    assert made.status_code == 201 and "tok-123456" not in made.content.decode() and made.json()["has_secret"]
    assert "tok-123456" not in writer.get("/api/v1/ticket-bridges").content.decode()
    stored = TicketBridge.objects.get()
    assert stored.secret_encrypted and "tok-123456" not in stored.secret_encrypted
    audit = AuditEvent.objects.get(action="ticket_bridge.created")
    assert "tok-123456" not in json.dumps(audit.data)


def test_a_url_that_became_unsafe_is_refused_at_send_time(writer, make_alert, settings):
    alert = make_alert()
    with Jira() as jira:
        jira_bridge(writer, jira)
        settings.WEBHOOK_ALLOWED_NETWORKS = []
        settings.WEBHOOK_ALLOW_HTTP = True  # even with http allowed, loopback stays refused
        refused = writer.post(f"/api/v1/alerts/{alert.pk}/ticket")
    assert refused.status_code == 502 and "URL refused" in refused.json()["error"]["message"]
    assert jira.requests == []


def test_the_sweep_skips_bridges_of_tenants_without_a_recent_alert_in_one_query(writer, make_alert):
    """Every 15 s the sweep looks for new alerts per auto-creating bridge: tenants with no alert in
    the lookback are found in one query and skipped, so 25 quiet tenants' bridges cost what 1 does."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from apps.tenants.models import Tenant

    def quiet_bridges(start: int, n: int) -> None:
        for i in range(start, start + n):
            quiet = Tenant.objects.create(slug=f"quiet-{i}", name=f"Quiet {i}")
            TicketBridge.objects.create(tenant=quiet, kind="generic", base_url="http://127.0.0.1:9/tickets",
                                        auto_create_severities=["critical"], created_at=timezone.now(),
                                        updated_at=timezone.now())

    def statements() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert tickets.create_due() == 0
        return len(queries.captured_queries)

    quiet_bridges(0, 1)
    one = statements()
    quiet_bridges(1, 24)
    assert statements() == one
    with Jira() as jira:
        jira_bridge(writer, jira, auto_create_severities=["critical"])
        make_alert(severity="critical")
        assert tickets.create_due() == 1  # the tenant with an alert is still swept
    assert jira.paths() == ["/rest/api/2/issue"]
