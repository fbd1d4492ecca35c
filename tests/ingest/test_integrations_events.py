"""POST /api/v1/events: batched like logs, per-event errors, dedup, resolve, masking."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
import pytest

from apps.alerts.models import Alert, AlertState
from apps.core.vocabulary import AlertSource
from apps.ingest.models import BatchKind, BatchStatus, IngestBatch
from apps.tenants.models import Plugin

from .conftest import ndjson
from .integrations_support import DEEP, EVENTS_URL, accept_and_process, nested, post, with_deep

pytestmark = pytest.mark.django_db


@pytest.fixture
def ev(api, make_token, tenant):
    return api(make_token(tenant, "alerts:ingest", name="events"))


def event(**kw) -> dict:
    base = {"source": "backup", "event": "BackupFailed", "resource": "db-1", "severity": "critical",
            "status": "firing", "summary": "nightly backup failed", "labels": {"env": "prod"},
            "annotations": {"log": "s3://backups/db-1"}}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not None}


def test_an_event_fires_an_alert_and_resolved_resolves_it(ev, no_doorbell):
    data = accept_and_process(ev, EVENTS_URL, orjson.dumps([event()]))
    assert data["accepted"] == 1 and IngestBatch.objects.get().kind == BatchKind.EVENTS
    alert = Alert.objects.get()
    assert alert.source == AlertSource.EVENT and alert.rule_key == "backup/BackupFailed/db-1"
    assert (alert.title, alert.summary, alert.severity) == ("BackupFailed on db-1", "nightly backup failed", "critical")
    assert alert.labels == {"env": "prod"} and alert.annotations["log"] == "s3://backups/db-1"
    accept_and_process(ev, EVENTS_URL, orjson.dumps({"events": [event(status="resolved")]}))
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED and alert.resolved_by == "events"


def test_dedup_on_dedup_key_else_source_event_resource(ev, no_doorbell):
    accept_and_process(ev, EVENTS_URL, ndjson([
        event(), event(), event(resource="db-2"),
        event(dedup_key="k-1", event="A"), event(dedup_key="k-1", event="B")]), content_type="application/x-ndjson")
    # Without ts an event's occurrence is the request's arrival: the same key twice in one request is one.
    keys = dict(Alert.objects.values_list("rule_key", "count"))
    assert keys == {"backup/BackupFailed/db-1": 1, "backup/BackupFailed/db-2": 1, "k-1": 1}
    accept_and_process(ev, EVENTS_URL, orjson.dumps([event(), event(dedup_key="k-1")]))
    keys = dict(Alert.objects.values_list("rule_key", "count"))
    assert keys == {"backup/BackupFailed/db-1": 2, "backup/BackupFailed/db-2": 1, "k-1": 2}


def test_the_same_event_resent_with_its_ts_counts_once(ev, no_doorbell):
    ts = datetime.now(timezone.utc).isoformat()
    accept_and_process(ev, EVENTS_URL, orjson.dumps([event(ts=ts)]))
    accept_and_process(ev, EVENTS_URL, orjson.dumps([event(ts=ts)]))  # a client retry
    assert Alert.objects.get().count == 1


def test_a_batch_of_a_tenant_switched_off_after_acceptance_applies_nothing(ev, tenant, no_doorbell):
    from apps.ingest.processing import process_batch

    data = post(ev, EVENTS_URL, orjson.dumps([event()])).json()
    tenant.active = False
    tenant.save(update_fields=["active"])  # in this process: the tenant cache forgets it at once
    process_batch(batch_id=data["batch_id"])
    assert not Alert.objects.exists()
    assert IngestBatch.objects.get(pk=data["batch_id"]).status == BatchStatus.DONE  # done, not retried forever


def test_fire_and_resolve_in_one_batch_apply_in_order(ev, no_doorbell):
    accept_and_process(ev, EVENTS_URL, orjson.dumps([event(), event(status="resolved")]))
    assert Alert.objects.get().state == AlertState.RESOLVED


def test_each_bad_event_is_rejected_naming_its_field(ev, no_doorbell):
    too_old = (datetime.now(timezone.utc) - timedelta(days=30)).isoformat()
    body = orjson.dumps([
        event(), event(source=None), event(event=""), event(severity="apocalyptic"), event(status="open"),
        event(labels=["a"]), event(labels={"nested": {"x": 1}}), event(dedup_key="x" * 101), event(ts=too_old),
        event(tenant_id="globex"), "a string", event(plugin_id="bad slug!")])
    resp = post(ev, EVENTS_URL, body)
    assert resp.status_code == 202
    data = resp.json()
    assert data["accepted"] == 1
    assert [(r["index"], r["error"].split(":")[0]) for r in data["rejected"]] == [
        (1, "source"), (2, "event"), (3, "severity"), (4, "status"), (5, "labels"), (6, "labels.nested"),
        (7, "dedup_key"), (8, "ts"), (9, "tenant_id"), (10, "event"), (11, "plugin_id")]
    assert "apocalyptic" in data["rejected"][2]["error"] and "critical" in data["rejected"][2]["error"]


def test_a_ts_outside_the_calendar_in_utc_rejects_only_its_event(ev, no_doorbell):
    # Was a 500 (OverflowError converting to UTC).
    resp = post(ev, EVENTS_URL, orjson.dumps([event(), event(ts="9999-12-31T23:59:59-01:00")]))
    assert resp.status_code == 202, resp.content
    data = resp.json()
    assert data["accepted"] == 1
    assert [r["index"] for r in data["rejected"]] == [1]
    assert data["rejected"][0]["error"].startswith("ts: ") and "out of range" in data["rejected"][0]["error"]


def test_annotations_nested_deeper_than_log_fields_may_be_are_refused_naming_the_path(ev, no_doorbell):
    # 260+ levels was a 500 (orjson's recursion limit storing the batch, or RecursionError in asdict).
    resp = post(ev, EVENTS_URL, with_deep(orjson.dumps([event(annotations=DEEP)]), 300))
    assert resp.status_code == 422, resp.content
    assert "annotations.a.a.a.a.a: nested deeper than 5 levels" in resp.json()["error"]["message"]
    assert not IngestBatch.objects.exists()
    # In a batch only that event is refused; as deep as a log's fields may be is kept as it is.
    body = orjson.dumps([event(annotations=nested(4)), event(annotations={"x": [DEEP]})])
    data = accept_and_process(ev, EVENTS_URL, with_deep(body, 300))
    assert data["rejected"] == [{"index": 1, "error": "annotations.x[0].a.a.a: nested deeper than 5 levels"}]
    assert Alert.objects.get().annotations["a"] == nested(3)


def test_a_body_that_can_never_be_valid_is_422(ev, no_doorbell):
    for body in (b"", b"42", b'{"events": 5}', b"not json\nat all"):
        resp = post(ev, EVENTS_URL, body)
        assert resp.status_code == 422, body
        assert resp.json()["error"]["message"].startswith("body:")
    resp = post(ev, EVENTS_URL, orjson.dumps([event(status="open")]))
    assert resp.status_code == 422 and "status" in resp.json()["error"]["message"]
    for empty in (b"[]", b'{"events": []}'):  # was a 500 (found by schemathesis)
        resp = post(ev, EVENTS_URL, empty)
        assert resp.status_code == 422, empty
        assert resp.json()["error"]["message"] == "the body holds no entries: send at least one"
    assert not IngestBatch.objects.exists()


def test_a_planted_secret_is_masked_before_anything_is_stored(ev, no_doorbell):
    secret = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"
    body = orjson.dumps([event(summary=f"deploy failed: password=hunter2hunter2 token {secret}",
                               labels={"api_key": "abcd1234abcd1234", "env": "prod"},
                               annotations={"note": f"Authorization: Bearer {secret}"})])
    resp = post(ev, EVENTS_URL, body)
    assert resp.status_code == 202
    stored = bytes(IngestBatch.objects.get().payload)
    assert b"hunter2hunter2" not in stored and secret.encode() not in stored and b"abcd1234abcd1234" not in stored
    from apps.ingest.processing import process_batch

    process_batch(batch_id=resp.json()["batch_id"])
    alert = Alert.objects.get()
    everything = orjson.dumps([alert.summary, alert.labels, alert.annotations, alert.title])
    assert b"hunter2hunter2" not in everything and secret.encode() not in everything
    assert "[MASKED" in alert.summary and alert.labels["api_key"].startswith("[MASKED") and alert.labels["env"] == "prod"


def test_events_of_a_new_plugin_past_the_limit_are_rejected(ev, tenant, no_doorbell):
    tenant.max_plugins = 1
    tenant.save(update_fields=["max_plugins"])
    Plugin.objects.create(tenant=tenant, slug="known", name="known")
    resp = post(ev, EVENTS_URL, orjson.dumps([event(plugin_id="known"), event(plugin_id="fresh", resource="x")]))
    data = resp.json()
    assert resp.status_code == 202 and data["accepted"] == 1
    assert data["rejected"][0]["index"] == 1 and "limit of 1 plugins" in data["rejected"][0]["error"]


def test_scope_and_tenant_isolation(api, make_token, tenant, other_tenant, no_doorbell):
    logs_only = api(make_token(tenant, "logs:write"))
    assert post(logs_only, EVENTS_URL, orjson.dumps([event()])).status_code == 403
    acme = api(make_token(tenant, "alerts:ingest"))
    assert post(acme, f"{EVENTS_URL}?tenant=globex", orjson.dumps([event()])).status_code == 403
    platform = api(make_token(None, "alerts:ingest", name="platform"))
    resp = post(platform, f"{EVENTS_URL}?tenant=globex", orjson.dumps([event()]))
    assert resp.status_code == 202 and IngestBatch.objects.get().tenant_id == other_tenant.pk


def test_over_quota_is_429_for_events(ev, settings, clean_redis, no_doorbell):
    settings.INGEST_TENANT_EVENTS_PER_SECOND = 1
    assert post(ev, EVENTS_URL, orjson.dumps([event(resource=str(i)) for i in range(10)])).status_code == 202
    resp = post(ev, EVENTS_URL, orjson.dumps([event()]))
    assert resp.status_code == 429 and resp["Retry-After"]
