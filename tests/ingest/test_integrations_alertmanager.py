"""POST /api/v1/integrations/alertmanager: validation, auth, tenancy, durable store, and the
worker's fire / absorb / resolve by fingerprint."""
from __future__ import annotations

from ipaddress import ip_network

import orjson
import pytest

from apps.alerts.models import Alert, AlertState, TimelineEntry
from apps.audit.models import AuditEvent
from apps.core.vocabulary import AlertSource
from apps.delivery.models import Delivery
from apps.delivery.services import create_endpoint
from apps.ingest.models import BatchKind, BatchStatus, IngestBatch
from apps.tenants.models import Plugin

from .integrations_support import (
    AM_URL, DEEP, ZERO_TIME, accept_and_process, am_alert, am_body, iso, post, with_deep)

pytestmark = pytest.mark.django_db


@pytest.fixture
def am(api, make_token, tenant):
    return api(make_token(tenant, "alerts:ingest", name="alertmanager"))


def test_a_firing_alert_is_stored_durably_then_becomes_one_alert(am, tenant, no_doorbell,
                                                                 django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        resp = post(am, AM_URL, am_body(am_alert()))
    assert resp.status_code == 202
    data = resp.json()
    assert data["accepted"] == 1 and data["rejected"] == []
    batch = IngestBatch.objects.get(pk=data["batch_id"])
    assert (batch.kind, batch.status, batch.tenant_id, batch.event_count) == (
        BatchKind.ALERTMANAGER, BatchStatus.PENDING, tenant.pk, 1)
    assert no_doorbell == [batch.pk]
    assert not Alert.objects.exists()  # nothing fires in the web request

    from apps.ingest.processing import process_batch

    assert process_batch(batch_id=batch.pk).alerts_fired == 1
    alert = Alert.objects.get()
    assert alert.source == AlertSource.ALERTMANAGER and alert.rule_key == "a1b2c3d4e5f60718"
    assert alert.severity == "critical" and alert.title == "CPU above 90% on db-1"
    assert alert.summary == "load 12 for 5 minutes" and alert.count == 1
    assert alert.labels["instance"] == "db-1:9100" and alert.plugin.slug == "node"
    assert alert.annotations["generatorURL"] == "http://prometheus:9090/graph?g0.expr=cpu"
    assert alert.annotations["externalURL"] == "http://alertmanager:9093"
    assert alert.annotations["runbook_url"] == "https://runbooks.example/cpu"
    assert alert.recommended_action == "Runbook: https://runbooks.example/cpu"
    batch.refresh_from_db()
    assert batch.status == BatchStatus.DONE and bytes(batch.payload) == b""


def test_repeats_are_absorbed_without_inflating_count_and_a_new_start_counts_once(am, no_doorbell):
    first = iso(30)
    for _ in range(3):  # Alertmanager re-sends every repeat_interval with the same startsAt
        accept_and_process(am, AM_URL, am_body(am_alert(starts=first)))
    alert = Alert.objects.get()
    assert alert.count == 1 and alert.state == AlertState.OPEN
    assert TimelineEntry.objects.filter(alert=alert, kind=TimelineEntry.Kind.OCCURRENCE).count() == 0
    again = iso(1)
    accept_and_process(am, AM_URL, am_body(am_alert(starts=again)))  # fired again in Alertmanager
    accept_and_process(am, AM_URL, am_body(am_alert(starts=again)))
    alert.refresh_from_db()
    assert Alert.objects.count() == 1 and alert.count == 2


def test_distinct_fingerprints_are_distinct_alerts_and_tenants_never_share_one(am, api, make_token, other_tenant,
                                                                              no_doorbell):
    accept_and_process(am, AM_URL, am_body(am_alert("f1"), am_alert("f2")))
    other = api(make_token(other_tenant, "alerts:ingest"))
    accept_and_process(other, AM_URL, am_body(am_alert("f1")))
    assert Alert.objects.count() == 3
    assert sorted(Alert.objects.values_list("tenant__slug", "rule_key")) == [
        ("acme", "f1"), ("acme", "f2"), ("globex", "f1")]


def test_resolved_resolves_with_a_timeline_line_and_the_usual_notification(am, tenant, settings, no_doorbell):
    settings.WEBHOOK_ALLOWED_NETWORKS = [ip_network("127.0.0.0/8")]
    create_endpoint(tenant=tenant, url="http://127.0.0.1:9/hook", event_types=["alert.triggered", "alert.updated"])
    started = iso(10)
    accept_and_process(am, AM_URL, am_body(am_alert(starts=started)))
    ended = iso(0)
    accept_and_process(am, AM_URL, am_body(am_alert(status="resolved", starts=started, ends=ended), status="resolved"))
    alert = Alert.objects.get()
    assert alert.state == AlertState.RESOLVED and alert.resolved_by == "alertmanager"
    line = TimelineEntry.objects.get(alert=alert, kind=TimelineEntry.Kind.RESOLVED)
    assert line.actor_label == "alertmanager" and line.message.startswith("resolved in alertmanager at ")
    assert AuditEvent.objects.filter(action="alert.resolved", target_id=str(alert.pk)).exists()
    assert sorted(Delivery.objects.filter(alert=alert).values_list("event_type", flat=True)) == [
        "alert.triggered", "alert.updated"]


def test_a_resolved_alert_that_fires_again_reopens(am, no_doorbell):
    accept_and_process(am, AM_URL, am_body(am_alert(starts=iso(20))))
    accept_and_process(am, AM_URL, am_body(am_alert(status="resolved", ends=iso(10)), status="resolved"))
    accept_and_process(am, AM_URL, am_body(am_alert(starts=iso(1))))
    alert = Alert.objects.get()
    assert alert.state == AlertState.OPEN and alert.reopened_count == 1


def test_a_resolved_entry_for_an_unknown_alert_changes_nothing(am, no_doorbell):
    accept_and_process(am, AM_URL, am_body(am_alert(status="resolved", ends=iso(0)), status="resolved"))
    assert not Alert.objects.exists()


@pytest.mark.parametrize(("label", "expected"), [
    ("critical", "critical"), ("warning", "warning"), ("info", "info"), ("page", "emergency"),
    ("error", "critical"), ("CRITICAL", "critical"), ("whatever", "warning"), (None, "warning")])
def test_severity_mapping(am, no_doorbell, label, expected):
    alert = am_alert()
    if label is None:
        del alert["labels"]["severity"]
    else:
        alert["labels"]["severity"] = label
    accept_and_process(am, AM_URL, am_body(alert))
    assert Alert.objects.get().severity == expected


def test_severity_mapping_is_configurable(am, no_doorbell, settings):
    settings.ALERTMANAGER_SEVERITY_MAP = {"p1": "emergency", "p3": "info"}
    accept_and_process(am, AM_URL, am_body(am_alert("x", severity="P1"), am_alert("y", severity="p3")))
    assert dict(Alert.objects.values_list("rule_key", "severity")) == {"x": "emergency", "y": "info"}


def test_plugin_from_job_then_service_then_none(am, no_doorbell):
    a = am_alert("a")
    b = am_alert("b", service="billing api")
    del b["labels"]["job"]
    c = am_alert("c")
    del c["labels"]["job"]
    accept_and_process(am, AM_URL, am_body(a, b, c))
    assert dict(Alert.objects.values_list("rule_key", "plugin__slug")) == {"a": "node", "b": "billing-api", "c": None}


def test_a_new_plugin_past_the_tenant_limit_is_dropped_but_the_alert_kept(am, tenant, no_doorbell):
    tenant.max_plugins = 1
    tenant.save(update_fields=["max_plugins"])
    Plugin.objects.create(tenant=tenant, slug="checkout", name="checkout")
    data = accept_and_process(am, AM_URL, am_body(am_alert(job="brand-new")))
    assert data["accepted"] == 1
    alert = Alert.objects.get()
    assert alert.plugin is None
    assert not Plugin.objects.filter(slug="brand-new").exists()


# --------------------------------------------------------------------------- validation and auth


@pytest.mark.parametrize(("body", "field"), [
    (b"not json", "body"),
    (b"[1, 2]", "body"),
    (orjson.dumps({"version": "4"}), "alerts"),
    (orjson.dumps({"alerts": {}}), "alerts"),
    (orjson.dumps({"alerts": []}), "alerts"),
    (orjson.dumps({"alerts": [am_alert()], "commonLabels": []}), "commonLabels"),
    (orjson.dumps({"alerts": [am_alert()], "externalURL": 5}), "externalURL"),
])
def test_a_body_that_can_never_be_valid_is_422_naming_the_field(am, no_doorbell, body, field):
    resp = post(am, AM_URL, body)
    assert resp.status_code == 422, resp.content
    error = resp.json()["error"]
    assert error["message"].startswith(f"{field}:") or field in error["message"]
    assert not IngestBatch.objects.exists() and no_doorbell == []


def test_bad_alerts_are_rejected_by_index_and_the_good_ones_accepted(am, no_doorbell):
    bad_status = am_alert("b", status="pending")
    no_labels = {**am_alert("c"), "labels": {}}
    bad_start = {**am_alert("d"), "startsAt": "yesterday"}
    resp = post(am, AM_URL, am_body(am_alert("a"), bad_status, no_labels, bad_start))
    assert resp.status_code == 202
    data = resp.json()
    assert data["accepted"] == 1
    assert [(r["index"], r["error"].split(":")[0]) for r in data["rejected"]] == [
        (1, "alerts[1].status"), (2, "alerts[2].labels"), (3, "alerts[3].startsAt")]


def test_a_start_or_end_outside_the_calendar_in_utc_rejects_only_its_alert(am, no_doorbell):
    # Was a 500 (OverflowError converting to UTC).
    late_start = am_alert("b", starts="9999-12-31T23:59:59-01:00")
    late_end = am_alert("c", status="resolved", ends="9999-12-31T23:59:59-01:00")
    resp = post(am, AM_URL, am_body(am_alert("a"), late_start, late_end))
    assert resp.status_code == 202, resp.content
    data = resp.json()
    assert data["accepted"] == 1
    assert [(r["index"], r["error"].split(":")[0]) for r in data["rejected"]] == [
        (1, "alerts[1].startsAt"), (2, "alerts[2].endsAt")]
    assert all("out of range" in r["error"] for r in data["rejected"])


def test_annotations_nested_too_deep_are_refused_naming_the_path(am, no_doorbell):
    # 300 levels was a 500 (orjson's recursion limit storing the batch, or RecursionError in asdict).
    resp = post(am, AM_URL, with_deep(am_body({**am_alert(), "annotations": DEEP}), 300))
    assert resp.status_code == 422, resp.content
    assert "alerts[0].annotations.a.a.a.a.a: nested deeper than 5 levels" in resp.json()["error"]["message"]
    assert not IngestBatch.objects.exists()


def test_every_alert_bad_is_422(am, no_doorbell):
    resp = post(am, AM_URL, am_body(am_alert(status="pending")))
    assert resp.status_code == 422
    assert "alerts[0].status" in resp.json()["error"]["message"]
    assert not IngestBatch.objects.exists()


def test_firing_endsat_zero_time_and_missing_fingerprint_fall_back_to_labels(am, no_doorbell):
    alert = am_alert(ends=ZERO_TIME)
    del alert["fingerprint"]
    accept_and_process(am, AM_URL, am_body(alert))
    accept_and_process(am, AM_URL, am_body(alert))
    assert Alert.objects.get().rule_key.startswith("labels:")


def test_missing_token_is_401_and_a_token_without_alerts_ingest_is_403(api, make_token, tenant, no_doorbell):
    assert post(api(), AM_URL, am_body(am_alert())).status_code == 401
    resp = post(api(make_token(tenant, "logs:write,alerts:write")), AM_URL, am_body(am_alert()))
    assert resp.status_code == 403 and "alerts:ingest" in resp.json()["error"]["message"]
    assert not IngestBatch.objects.exists()


def test_a_tenant_token_cannot_post_for_another_tenant(am, other_tenant, no_doorbell):
    resp = post(am, f"{AM_URL}?tenant=globex", am_body(am_alert()))
    assert resp.status_code == 403
    assert "bound to tenant 'acme'" in resp.json()["error"]["message"]
    assert not IngestBatch.objects.exists()
    assert post(am, f"{AM_URL}?tenant=acme", am_body(am_alert())).status_code == 202


def test_a_platform_token_must_name_a_known_tenant(api, make_token, tenant, no_doorbell):
    platform = api(make_token(None, "alerts:ingest", name="platform"))
    missing = post(platform, AM_URL, am_body(am_alert()))
    assert missing.status_code == 422 and missing.json()["error"]["message"].startswith("tenant:")
    unknown = post(platform, f"{AM_URL}?tenant=nope", am_body(am_alert()))
    assert unknown.status_code == 422 and "unknown tenant 'nope'" in unknown.json()["error"]["message"]
    ok = post(platform, f"{AM_URL}?tenant=acme", am_body(am_alert()))
    assert ok.status_code == 202 and IngestBatch.objects.get().tenant_id == tenant.pk


def test_over_the_size_limit_is_413(am, settings, no_doorbell):
    settings.INGEST_MAX_BYTES = 200
    assert post(am, AM_URL, am_body(am_alert())).status_code == 413


def test_over_quota_is_503_with_retry_after_because_alertmanager_drops_4xx(am, settings, clean_redis, no_doorbell):
    settings.INGEST_TENANT_EVENTS_PER_SECOND = 1  # 10 per 10 s window
    assert post(am, AM_URL, am_body(*[am_alert(f"f{i}") for i in range(10)])).status_code == 202
    resp = post(am, AM_URL, am_body(am_alert("one-more")))
    assert resp.status_code == 503 and int(resp["Retry-After"]) >= 1
    assert resp.json()["error"]["code"] == "rate_limited"
    assert IngestBatch.objects.count() == 1


def test_the_console_alert_detail_shows_source_labels_and_linked_annotations(am, no_doorbell):
    from django.contrib.auth.models import Group, User
    from django.test import Client

    alert = am_alert()
    alert["annotations"]["runbook_url"] = "javascript:alert(1)"  # never a link
    accept_and_process(am, AM_URL, am_body(alert))
    user = User.objects.create_user(username="op", password="x" * 20, is_staff=True)
    user.groups.add(Group.objects.get(name="operators"))
    client = Client()
    client.force_login(user)
    body = client.get(f"/alerts/{Alert.objects.get().pk}").content.decode()
    assert "Prometheus Alertmanager" in body and "instance=db-1:9100" in body
    assert '<a href="http://prometheus:9090/graph?g0.expr=cpu"' in body
    assert '<a href="http://alertmanager:9093"' in body and "load 12 for 5 minutes" in body
    assert 'href="javascript:' not in body and "javascript:alert(1)" in body
