"""Remediation actions run against a real runbook server on 127.0.0.1, signatures checked with the
standardwebhooks library like the webhook tests do."""
from __future__ import annotations

import json

import pytest
from standardwebhooks.webhooks import Webhook

from apps.actions import remediation
from apps.actions.models import ActionRun, RemediationAction
from apps.alerts.models import TimelineEntry
from apps.audit.models import AuditEvent

from .peers import Peer

pytestmark = pytest.mark.django_db

BODY = '{"action": {{ action.name|tojson }}, "alert": {{ alert.id }}, "title": {{ alert.title|tojson }}, "severity": "{{ alert.severity }}"}'


def runbook(status: int = 202):
    return Peer(lambda path, headers, body: (status, {"accepted": True, "job": "restart-42"}))


def create_action(writer, url: str, **extra) -> dict:
    response = writer.post("/api/v1/actions", {"name": "restart-checkout", "url": url, "body_template": BODY,
                                               **extra}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_a_confirmed_run_reaches_the_runbook_signed_and_is_in_timeline_audit_and_run(writer, make_alert):
    alert = make_alert(severity="critical")
    with runbook() as server:
        action = create_action(writer, f"{server.url}/runbooks/restart", allowed_severities=["critical"])
        secret = action["secret"]
        assert secret.startswith("whsec_")
        response = writer.post(f"/api/v1/alerts/{alert.pk}/actions/restart-checkout", {"confirm": True}, format="json")
    assert response.status_code == 200, response.content
    request = server.requests[0]
    assert request["path"] == "/runbooks/restart"
    Webhook(secret).verify(request["body"], request["headers"])  # raises unless signed with the action's secret
    assert json.loads(request["body"]) == {"action": "restart-checkout", "alert": alert.pk, "title": alert.title,
                                           "severity": "critical"}
    run = ActionRun.objects.get()
    assert request["headers"]["webhook-id"] == f"run_{run.pk}"
    assert request["headers"]["x-powerx-alert-id"] == str(alert.pk)
    assert response.json()["status"] == run.status == ActionRun.Status.SUCCEEDED
    assert run.http_status == 202 and run.latency_ms is not None and "restart-42" in run.response_excerpt
    line = TimelineEntry.objects.get(alert=alert, data__event="action.run")
    assert line.message.startswith("Action restart-checkout: HTTP 202 in ") and line.actor_label == "token:test"
    assert line.data["response_excerpt"] == run.response_excerpt
    audit = AuditEvent.objects.get(action="alert.action_run", target_id=str(alert.pk))
    assert audit.data["http_status"] == 202 and audit.data["action"] == "restart-checkout"
    assert secret not in writer.get(f"/api/v1/actions/{action['id']}").content.decode()
    assert secret not in RemediationAction.objects.get().secret_encrypted


def test_confirmation_required_is_409_naming_confirm_and_calls_nothing(writer, make_alert):
    alert = make_alert()
    with runbook() as server:
        create_action(writer, server.url)
        refused = writer.post(f"/api/v1/alerts/{alert.pk}/actions/restart-checkout", {}, format="json")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "confirmation_required"
    assert refused.json()["error"]["details"] == {"confirm": ["required"]}
    assert server.requests == [] and not ActionRun.objects.exists()


def test_severity_not_allowed_is_422(writer, make_alert):
    alert = make_alert(severity="warning")
    with runbook() as server:
        create_action(writer, server.url, allowed_severities=["critical", "emergency"], requires_confirmation=False)
        refused = writer.post(f"/api/v1/alerts/{alert.pk}/actions/restart-checkout", {}, format="json")
    assert refused.status_code == 422
    assert "not allowed for warning alerts (allowed: critical, emergency)" in refused.json()["error"]["message"]
    assert server.requests == [] and not ActionRun.objects.exists()


def test_a_failing_runbook_is_recorded_as_a_failed_run(writer, make_alert):
    alert = make_alert()
    with runbook(status=500) as server:
        create_action(writer, server.url, requires_confirmation=False)
        response = writer.post(f"/api/v1/alerts/{alert.pk}/actions/restart-checkout", {}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "failed" and response.json()["http_status"] == 500
    assert response.json()["error"] == "HTTP 500"
    assert TimelineEntry.objects.filter(alert=alert, data__event="action.run", data__status="failed").exists()


def test_auto_run_honours_the_hourly_rate_limit_and_records_the_skip(writer, make_alert):
    with runbook() as server:
        create_action(writer, server.url, auto_run_severities=["critical"], max_runs_per_hour=1)
        first, second, quiet = make_alert(), make_alert(), make_alert(severity="info")
        assert remediation.auto_run_due() == 2
        assert remediation.auto_run_due() == 0  # once per alert
    assert len(server.requests) == 1
    runs = {run.alert_id: run for run in ActionRun.objects.all()}
    assert set(runs) == {first.pk, second.pk}
    assert runs[first.pk].status == ActionRun.Status.SUCCEEDED and runs[first.pk].trigger == "auto"
    skipped = runs[second.pk]
    assert skipped.status == ActionRun.Status.SKIPPED
    assert skipped.error == "rate limit: 1 automatic runs in the last hour (max 1)"
    assert TimelineEntry.objects.filter(alert=second, data__event="action.skipped").exists()
    assert AuditEvent.objects.filter(action="alert.action_skipped", target_id=str(second.pk)).exists()
    assert quiet.pk not in runs


def test_unsafe_action_urls_are_refused_at_save_and_at_run_time(writer, make_alert, settings):
    for url in ("http://169.254.169.254/latest/meta-data", "https://10.1.2.3/run", "ftp://127.0.0.1/x"):
        refused = writer.post("/api/v1/actions", {"name": "x", "url": url}, format="json")
        assert refused.status_code == 422, url
        assert refused.json()["error"]["message"].startswith("url:")
    assert not RemediationAction.objects.exists()

    alert = make_alert()
    with runbook() as server:
        create_action(writer, server.url, requires_confirmation=False)
        settings.WEBHOOK_ALLOWED_NETWORKS = []
        settings.WEBHOOK_ALLOW_HTTP = True
        response = writer.post(f"/api/v1/alerts/{alert.pk}/actions/restart-checkout", {}, format="json")
    assert server.requests == []
    assert response.json()["status"] == "failed" and "URL refused" in response.json()["error"]
    assert "loopback" in response.json()["error"]


def test_a_body_template_that_is_not_json_is_refused(writer):
    refused = writer.post("/api/v1/actions", {"name": "x", "url": "http://127.0.0.1:9/",
                                              "body_template": '{"title": {{ alert.title }}}'}, format="json")
    assert refused.status_code == 422 and "not valid JSON" in refused.json()["error"]["message"]
