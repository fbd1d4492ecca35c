"""POST /api/v1/integrations/grafana: the unified alerting payload, values, and the optional HMAC."""
from __future__ import annotations

import hashlib
import hmac
import time

import orjson
import pytest
from django.core.management import CommandError, call_command

from apps.alerts.models import Alert, AlertState
from apps.audit.models import AuditEvent
from apps.core.vocabulary import AlertSource
from apps.ingest.integrations.secrets import set_secret
from apps.ingest.models import IngestBatch, IntegrationSecret

from .integrations_support import DEEP, GRAFANA_URL, ZERO_TIME, accept_and_process, iso, post, with_deep

pytestmark = pytest.mark.django_db


@pytest.fixture
def graf(api, make_token, tenant):
    return api(make_token(tenant, "alerts:ingest", name="grafana"))


def grafana_alert(fingerprint="9e1f0c2b7d3a4e55", *, status="firing", values=None, ends=ZERO_TIME, starts=None):
    return {"status": status, "fingerprint": fingerprint, "startsAt": starts or iso(3), "endsAt": ends,
            "labels": {"alertname": "DiskFull", "grafana_folder": "infra", "severity": "warning", "service": "db"},
            "annotations": {"description": "disk / is 97% full"},
            "values": {"B": 97.2} if values is None else values, "valueString": "[ var='B' value=97.2 ]",
            "generatorURL": "https://grafana.example/alerting/grafana/abc/view",
            "dashboardURL": "https://grafana.example/d/xyz", "panelURL": "https://grafana.example/d/xyz?viewPanel=2",
            "silenceURL": "https://grafana.example/alerting/silence/new"}


def grafana_body(*alerts, state="alerting") -> bytes:
    return orjson.dumps({
        "receiver": "alert-center", "status": "firing" if state == "alerting" else "resolved", "orgId": 1,
        "alerts": list(alerts), "groupLabels": {"alertname": "DiskFull"}, "commonLabels": {},
        "commonAnnotations": {}, "externalURL": "https://grafana.example/", "version": "1",
        "groupKey": '{}/{}:{alertname="DiskFull"}', "truncatedAlerts": 0, "title": "[FIRING:1] DiskFull",
        "state": state, "message": "**Firing**\n\nValue: B=97.2"})


def sig(secret: str, body: bytes, ts: str | None = None) -> str:
    message = (ts + ":").encode() + body if ts is not None else body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def test_a_grafana_alert_fires_with_its_links_and_single_value_then_resolves(graf, no_doorbell):
    started = iso(3)
    accept_and_process(graf, GRAFANA_URL, grafana_body(grafana_alert(starts=started)))
    alert = Alert.objects.get()
    assert alert.source == AlertSource.GRAFANA and alert.rule_key == "9e1f0c2b7d3a4e55"
    assert (alert.title, alert.summary, alert.severity) == ("DiskFull", "disk / is 97% full", "warning")
    assert alert.value == 97.2 and alert.annotations["values"] == {"B": 97.2}
    assert alert.annotations["dashboardURL"] == "https://grafana.example/d/xyz"
    assert alert.annotations["panelURL"].endswith("viewPanel=2") and alert.annotations["orgId"] == 1
    assert alert.plugin.slug == "db"
    accept_and_process(graf, GRAFANA_URL, grafana_body(grafana_alert(starts=started)))  # a repeat
    alert.refresh_from_db()
    assert Alert.objects.count() == 1 and alert.count == 1
    accept_and_process(graf, GRAFANA_URL, grafana_body(
        grafana_alert(status="resolved", ends=iso(0), starts=started), state="ok"))
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED and alert.resolved_by == "grafana"


def test_several_values_keep_value_empty(graf, no_doorbell):
    accept_and_process(graf, GRAFANA_URL, grafana_body(grafana_alert(values={"A": 1.0, "B": 2.0})))
    alert = Alert.objects.get()
    assert alert.value is None and alert.annotations["values"] == {"A": 1.0, "B": 2.0}


def test_bad_grafana_fields_are_named(graf, no_doorbell):
    resp = post(graf, GRAFANA_URL, orjson.dumps({"version": "1", "alerts": [grafana_alert()], "title": 7}))
    assert resp.status_code == 422 and resp.json()["error"]["message"].startswith("title:")
    resp = post(graf, GRAFANA_URL, grafana_body(grafana_alert(values=[1, 2])))
    assert resp.status_code == 422 and "alerts[0].values" in resp.json()["error"]["message"]


def test_a_start_outside_the_calendar_in_utc_is_named(graf, no_doorbell):
    # Was a 500 (OverflowError converting to UTC); the only alert bad: 422 naming it.
    resp = post(graf, GRAFANA_URL, grafana_body(grafana_alert(starts="9999-12-31T23:59:59-01:00")))
    assert resp.status_code == 422, resp.content
    assert "alerts[0].startsAt" in resp.json()["error"]["message"]
    assert not IngestBatch.objects.exists()


@pytest.mark.parametrize("field", ["values", "annotations"])
def test_values_or_annotations_nested_too_deep_are_refused_naming_the_path(graf, no_doorbell, field):
    # Was a 500 (orjson's recursion limit storing the batch, or RecursionError in asdict).
    resp = post(graf, GRAFANA_URL, with_deep(grafana_body({**grafana_alert(), field: DEEP}), 300))
    assert resp.status_code == 422, resp.content
    assert f"alerts[0].{field}.a.a.a.a.a: nested deeper than 5 levels" in resp.json()["error"]["message"]
    assert not IngestBatch.objects.exists()


# --------------------------------------------------------------------------- HMAC


@pytest.fixture
def secret(tenant):
    return set_secret(tenant=tenant, kind="grafana", actor="test")


def test_without_a_secret_unsigned_requests_are_accepted(graf, no_doorbell):
    assert post(graf, GRAFANA_URL, grafana_body(grafana_alert())).status_code == 202


def test_a_valid_signature_is_accepted(graf, secret, no_doorbell):
    body = grafana_body(grafana_alert())
    resp = post(graf, GRAFANA_URL, body, HTTP_X_GRAFANA_ALERTING_SIGNATURE=sig(secret, body))
    assert resp.status_code == 202
    assert IngestBatch.objects.count() == 1


def test_a_missing_signature_is_401(graf, secret, no_doorbell):
    resp = post(graf, GRAFANA_URL, grafana_body(grafana_alert()))
    assert resp.status_code == 401
    error = resp.json()["error"]
    assert error["code"] == "bad_signature" and "missing X-Grafana-Alerting-Signature" in error["message"]
    assert not IngestBatch.objects.exists()


def test_a_wrong_signature_or_a_tampered_body_is_401(graf, secret, no_doorbell):
    body = grafana_body(grafana_alert())
    wrong = post(graf, GRAFANA_URL, body, HTTP_X_GRAFANA_ALERTING_SIGNATURE=sig("not-the-secret-at-all", body))
    tampered = post(graf, GRAFANA_URL, body.replace(b"DiskFull", b"DiskFine"),
                    HTTP_X_GRAFANA_ALERTING_SIGNATURE=sig(secret, body))
    assert wrong.status_code == tampered.status_code == 401
    assert "does not match" in wrong.json()["error"]["message"]
    assert not IngestBatch.objects.exists()


def test_a_secret_of_another_tenant_does_not_apply(graf, other_tenant, no_doorbell):
    set_secret(tenant=other_tenant, kind="grafana", actor="test")
    assert post(graf, GRAFANA_URL, grafana_body(grafana_alert())).status_code == 202


def test_timestamp_header_and_custom_header(graf, tenant, no_doorbell):
    secret = set_secret(tenant=tenant, kind="grafana", actor="test", header="X-Sig", timestamp_header="X-Ts")
    body = grafana_body(grafana_alert())
    now = str(int(time.time()))
    ok = post(graf, GRAFANA_URL, body, HTTP_X_SIG=sig(secret, body, now), HTTP_X_TS=now)
    assert ok.status_code == 202
    body_only = post(graf, GRAFANA_URL, body, HTTP_X_SIG=sig(secret, body), HTTP_X_TS=now)
    assert body_only.status_code == 401  # the timestamp is part of what is signed
    stale = str(int(time.time()) - 3600)
    old = post(graf, GRAFANA_URL, body, HTTP_X_SIG=sig(secret, body, stale), HTTP_X_TS=stale)
    assert old.status_code == 401 and "X-Ts" in old.json()["error"]["message"]
    no_ts = post(graf, GRAFANA_URL, body, HTTP_X_SIG=sig(secret, body, now))
    assert no_ts.status_code == 401
    assert IngestBatch.objects.count() == 1


@pytest.mark.parametrize("stamp", ["9" * 5000, "\u00b2"])
def test_a_timestamp_header_int_cannot_read_is_401_naming_the_header(graf, tenant, no_doorbell, stamp):
    # Were a 500 (ValueError from int()): past Python's 4300-digit limit, and a digit int() refuses
    # ('²' is str.isdigit(); the header's latin-1 byte 0xb2).
    secret = set_secret(tenant=tenant, kind="grafana", actor="test", header="X-Sig", timestamp_header="X-Ts")
    body = grafana_body(grafana_alert())
    resp = post(graf, GRAFANA_URL, body, HTTP_X_SIG=sig(secret, body, stamp), HTTP_X_TS=stamp)
    assert resp.status_code == 401 and "X-Ts" in resp.json()["error"]["message"]
    assert not IngestBatch.objects.exists()


def test_the_secret_is_stored_encrypted_and_its_changes_audited(tenant, secret):
    row = IntegrationSecret.objects.get(tenant=tenant, kind="grafana")
    assert secret not in row.secret_encrypted and len(secret) >= 32
    assert AuditEvent.objects.filter(action="integration_secret.set", tenant=tenant.pk).exists()
    assert secret not in str(list(AuditEvent.objects.values_list("data", flat=True)))


def test_management_command_prints_the_secret_once_and_it_verifies(graf, tenant, capsys, no_doorbell):
    call_command("set_integration_secret", "acme", "grafana")
    shown = capsys.readouterr()
    printed = shown.out.strip()  # the secret alone (the note is on stderr), as SECRET=$(...) captures it
    assert "\n" not in printed and "Shown once" in shown.err
    body = grafana_body(grafana_alert())
    assert post(graf, GRAFANA_URL, body, HTTP_X_GRAFANA_ALERTING_SIGNATURE=sig(printed, body)).status_code == 202
    call_command("set_integration_secret", "acme", "grafana", "--secret", "a-chosen-secret-of-length")
    assert AuditEvent.objects.filter(action="integration_secret.rotated").count() == 1
    assert post(graf, GRAFANA_URL, body, HTTP_X_GRAFANA_ALERTING_SIGNATURE=sig(printed, body)).status_code == 401
    call_command("set_integration_secret", "acme", "grafana", "--delete")
    assert post(graf, GRAFANA_URL, body).status_code == 202
    with pytest.raises(CommandError, match="unknown tenant"):
        call_command("set_integration_secret", "nope", "grafana")
    with pytest.raises(CommandError, match="16 characters"):
        call_command("set_integration_secret", "acme", "grafana", "--secret", "short")


def test_admin_sets_the_secret_write_only_and_audited(tenant, graf, no_doorbell):
    from django.contrib.auth.models import User
    from django.test import Client

    admin_user = User.objects.create_superuser("root", "root@example.com", "x" * 20)
    client = Client()
    client.force_login(admin_user)
    resp = client.post("/admin/ingest/integrationsecret/add/", {
        "tenant": tenant.pk, "kind": "grafana", "header": "X-Grafana-Alerting-Signature", "timestamp_header": "",
        "secret": "an-admin-chosen-secret-1234"}, follow=True)
    assert resp.status_code == 200
    row = IntegrationSecret.objects.get(tenant=tenant)
    assert "an-admin-chosen-secret-1234" not in row.secret_encrypted
    audit = AuditEvent.objects.get(action="integration_secret.set")
    assert audit.actor_label == "root" and "an-admin-chosen" not in str(audit.data)
    body = grafana_body(grafana_alert())
    good = sig("an-admin-chosen-secret-1234", body)
    assert post(graf, GRAFANA_URL, body, HTTP_X_GRAFANA_ALERTING_SIGNATURE=good).status_code == 202
    assert post(graf, GRAFANA_URL, body).status_code == 401
    page = client.get(f"/admin/ingest/integrationsecret/{row.pk}/change/").content.decode()
    assert "an-admin-chosen-secret-1234" not in page
