"""POST /api/v1/logs: every status code, body shape, tenancy rule and the hand-off."""
from __future__ import annotations

from datetime import datetime, timezone
from unittest import mock

import orjson
import pytest
from django.db import OperationalError, connection

from apps.core import clock
from apps.ingest import quota, services
from apps.ingest.models import BatchStatus, IngestBatch

from .conftest import URL, batch_events, event, ndjson

pytestmark = pytest.mark.django_db


def post_json(client, body, content_type="application/json"):
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post(URL, data=data, content_type=content_type)


# --------------------------------------------------------------------------- 202


def test_mixed_valid_and_invalid_events_are_accepted_one_by_one(writer_client, no_doorbell,
                                                                django_capture_on_commit_callbacks):
    body = [event(message="ok 1"), event(level=None), event(ts="yesterday-ish"), event(message="ok 2", level="warn")]
    with django_capture_on_commit_callbacks(execute=True):
        resp = post_json(writer_client, body)
    assert resp.status_code == 202, resp.content
    data = resp.json()
    assert data["accepted"] == 2
    assert [r["index"] for r in data["rejected"]] == [1, 2]
    assert data["rejected"][0]["error"] == "level: required"
    assert data["rejected"][1]["error"].startswith("ts: not RFC 3339")
    batch = IngestBatch.objects.get(pk=data["batch_id"])
    assert (batch.event_count, batch.rejected_count, batch.status) == (2, 2, BatchStatus.PENDING)
    assert batch.tenant.slug == "acme"
    assert [e.message for e in batch_events(batch.pk)] == ["ok 1", "ok 2"]
    assert no_doorbell == [batch.pk]


def test_a_ts_outside_the_calendar_in_utc_rejects_only_its_event(writer_client, no_doorbell):
    # Was a 500 (OverflowError converting to UTC) for the whole batch.
    body = [event(message="ok 1"), event(ts="0001-01-01T00:00:00+01:00"), event(ts="0001-01-01T00:30:00+01:00"),
            event(ts="9999-12-31T23:59:59-01:00"), event(message="ok 2")]
    resp = post_json(writer_client, body)
    assert resp.status_code == 202, resp.content
    data = resp.json()
    assert data["accepted"] == 2
    assert [(r["index"], r["error"].split(":")[0]) for r in data["rejected"]] == [(1, "ts"), (2, "ts"), (3, "ts")]
    assert [e.message for e in batch_events(data["batch_id"])] == ["ok 1", "ok 2"]


def test_events_envelope_and_single_object(writer_client, no_doorbell):
    resp = post_json(writer_client, {"events": [event(), event()]})
    assert resp.status_code == 202 and resp.json()["accepted"] == 2
    resp = post_json(writer_client, event(message="alone"))
    assert resp.status_code == 202 and resp.json()["accepted"] == 1
    assert batch_events(resp.json()["batch_id"])[0].message == "alone"


@pytest.mark.parametrize("content_type", ["application/x-ndjson", "text/plain"])
def test_ndjson_with_a_bad_line_rejects_only_that_line(writer_client, no_doorbell, content_type):
    raw = ndjson([event(message="first")]) + b"{not json\n\n" + ndjson([event(message="third")])
    resp = post_json(writer_client, raw, content_type)
    assert resp.status_code == 202
    data = resp.json()
    assert data["accepted"] == 2
    assert len(data["rejected"]) == 1 and data["rejected"][0]["index"] == 1
    assert data["rejected"][0]["error"].startswith("event: line 2: not valid JSON")
    assert [e.message for e in batch_events(data["batch_id"])] == ["first", "third"]


def test_every_event_rejected_is_202_without_a_batch(writer_client, no_doorbell,
                                                     django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        resp = post_json(writer_client, [event(level="LOUD"), event(message="")])
    assert resp.status_code == 202
    assert resp.json() == {"accepted": 0, "batch_id": None, "rejected": [
        {"index": 0, "error": "level: unknown level 'LOUD'"},
        {"index": 1, "error": "message: must not be empty"}]}
    assert not IngestBatch.objects.exists() and no_doorbell == []


def test_syslog_ng_aliases_are_mapped(writer_client, no_doorbell):
    line = {"MESSAGE": "sshd[22]: session opened", "ISODATE": "2024-05-01T12:00:00+02:00",
            "PROGRAM": "sshd", "HOST": "web-1", "PRIORITY": "warning"}
    with mock.patch.object(clock, "now", return_value=datetime(2024, 5, 1, 10, 0, 5, tzinfo=timezone.utc)):
        resp = post_json(writer_client, ndjson([line]), "application/x-ndjson")
    assert resp.status_code == 202, resp.content
    (ev,) = batch_events(resp.json()["batch_id"])
    assert (ev.message, ev.plugin_id, ev.tenant_id, ev.level) == ("sshd[22]: session opened", "sshd", "acme", "WARNING")
    assert ev.ts == datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc)
    assert ev.fields == {"host": "web-1"}


def test_secrets_are_masked_before_the_batch_is_stored(writer_client, no_doorbell):
    secrets = ["hunter2", "sk_live_abcdefghijklmnop1234", "bob@example.com", "4111 1111 1111 1111"]
    body = [event(message=f"login user=bob password={secrets[0]} ok"),
            event(message=f"charging with key {secrets[1]}"),
            event(message="mail sent", to=secrets[2], card=f"card {secrets[3]}"),
            event(message="cfg", db_password="plain-field-secret")]
    resp = post_json(writer_client, body)
    assert resp.status_code == 202 and resp.json()["accepted"] == 4
    payload = bytes(IngestBatch.objects.get(pk=resp.json()["batch_id"]).payload)
    for secret in secrets + ["plain-field-secret"]:
        assert secret.encode() not in payload
    events = batch_events(resp.json()["batch_id"])
    assert events[0].message == "login user=bob password=[MASKED:password] ok"
    assert events[2].fields == {"to": "[MASKED:email]", "card": "card [MASKED:card]"}
    assert events[3].fields == {"db_password": "[MASKED:password]"}


def test_a_body_larger_than_djangos_upload_limit_is_read(writer_client, no_doorbell, settings):
    # DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MiB) must not cap the intake below INGEST_MAX_BYTES.
    big = [event(message="x" * 1000) for _ in range(3000)]
    raw = ndjson(big)
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE < len(raw) < settings.INGEST_MAX_BYTES
    resp = post_json(writer_client, raw, "application/x-ndjson")
    assert resp.status_code == 202 and resp.json()["accepted"] == 3000


# --------------------------------------------------------------------------- tenancy


def test_tenant_token_cannot_write_another_tenant(writer_client, other_tenant, no_doorbell):
    resp = post_json(writer_client, [event(tenant_id="globex"), event(tenant_id=None)])
    assert resp.status_code == 202
    data = resp.json()
    assert data["accepted"] == 1
    assert data["rejected"] == [{"index": 0, "error": "tenant_id: token is bound to tenant 'acme', event names 'globex'"}]
    assert [e.tenant_id for e in batch_events(data["batch_id"])] == ["acme"]


def test_platform_token_writes_existing_tenants_only(platform_client, tenant, other_tenant, no_doorbell):
    resp = post_json(platform_client, [event(tenant_id="acme"), event(tenant_id="globex"), event(tenant_id="nope"),
                                       event(tenant_id=None)])
    data = resp.json()
    assert resp.status_code == 202 and data["accepted"] == 2
    assert data["rejected"] == [{"index": 2, "error": "tenant_id: unknown tenant 'nope'"},
                                {"index": 3, "error": "tenant_id: required"}]
    batch = IngestBatch.objects.get(pk=data["batch_id"])
    assert batch.tenant_id is None  # spans two tenants


def test_platform_token_cannot_write_an_inactive_tenant(platform_client, tenant, no_doorbell):
    tenant.active = False
    tenant.save()
    data = post_json(platform_client, [event()]).json()
    assert data["accepted"] == 0 and data["rejected"][0]["error"] == "tenant_id: unknown tenant 'acme'"


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(("raw", "content_type", "needle"), [
    (b"", "application/json", "empty body"),
    (b"   \n ", "application/x-ndjson", "empty body"),
    (b"\xff\xfe{}", "application/json", "not valid UTF-8"),
    (b"this is not json", "application/json", "not valid JSON"),
    (b"42", "application/json", "got a number"),
    (b'{"events": {"a": 1}}', "application/json", '"events" must be a list'),
    (b"hello\nworld\n", "application/x-ndjson", "no line of the NDJSON body is valid JSON"),
])
def test_bodies_that_can_never_be_valid_get_422(writer_client, no_doorbell, raw, content_type, needle):
    resp = post_json(writer_client, raw, content_type)
    assert resp.status_code == 422
    error = resp.json()["error"]
    assert error["code"] == "invalid_body" and needle in error["message"]
    assert not IngestBatch.objects.exists()


def test_413_over_the_byte_limit(writer_client, no_doorbell, settings):
    settings.INGEST_MAX_BYTES = 100
    resp = post_json(writer_client, [event(message="x" * 200)])
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "too_large"
    assert resp.json()["error"]["details"] == {"max_bytes": 100}
    assert not IngestBatch.objects.exists()


def test_413_over_the_event_count(writer_client, no_doorbell, settings):
    settings.INGEST_MAX_EVENTS = 2
    resp = post_json(writer_client, ndjson([event()] * 3), "application/x-ndjson")
    assert resp.status_code == 413 and "3 events" in resp.json()["error"]["message"]
    assert post_json(writer_client, [event()] * 2).status_code == 202


def test_401_without_or_with_a_bad_token(api, tenant, no_doorbell):
    assert post_json(api(), [event()]).status_code == 401
    resp = post_json(api("ac_nope_nope"), [event()])
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "authentication_failed"
    assert not IngestBatch.objects.exists()


def test_403_without_the_logs_write_scope(api, make_token, tenant, no_doorbell):
    resp = post_json(api(make_token(tenant, "alerts:read")), [event()])
    assert resp.status_code == 403
    assert resp.json()["error"]["message"] == "token lacks scope 'logs:write'"
    assert not IngestBatch.objects.exists()


@pytest.fixture
def fixed_window(monkeypatch, clean_redis, settings):
    settings.INGEST_TENANT_EVENTS_PER_SECOND = 1  # 10 events per 10 s window
    monkeypatch.setattr(quota, "_window", lambda: (1, 7))


def test_429_over_the_tenant_quota_with_retry_after(writer_client, no_doorbell, fixed_window):
    assert post_json(writer_client, [event()] * 8).status_code == 202
    resp = post_json(writer_client, [event()] * 5)
    assert resp.status_code == 429
    assert resp["Retry-After"] == "7"
    assert resp.json()["error"]["code"] == "rate_limited"
    assert IngestBatch.objects.count() == 1
    # The refused request counted nothing: two more events still fit, then the pre-check refuses.
    assert post_json(writer_client, [event()] * 2).status_code == 202
    assert post_json(writer_client, [event()]).status_code == 429


def test_quota_counts_only_accepted_events(writer_client, no_doorbell, fixed_window):
    resp = post_json(writer_client, [event()] * 10 + [event(level="nope")] * 5)
    assert resp.status_code == 202 and resp.json()["accepted"] == 10


def test_503_when_the_database_is_down_and_nothing_is_stored(writer_client, no_doorbell, monkeypatch, fixed_window):
    def down(batch):
        raise OperationalError("connection to server at 127.0.0.1 failed")

    monkeypatch.setattr(services, "insert_batch", down)
    resp = post_json(writer_client, [event()] * 4)
    assert resp.status_code == 503
    assert resp["Retry-After"] == "5"
    assert resp.json()["error"]["code"] == "unavailable"
    monkeypatch.undo()
    monkeypatch.setattr(quota, "_window", lambda: (1, 7))
    assert not IngestBatch.objects.exists() and no_doorbell == []
    # The quota was refunded: the full 10 events still fit.
    assert post_json(writer_client, [event()] * 10).status_code == 202


def test_503_when_authentication_cannot_reach_the_database(writer_client, monkeypatch):
    def down(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr("apps.tenants.tokens.authenticate_token", down)
    resp = post_json(writer_client, [event()])
    assert resp.status_code == 503 and resp["Retry-After"] == "5"


def test_503_when_masking_rules_cannot_be_loaded(writer_client, no_doorbell, settings, tmp_path):
    settings.MASKING_RULES_FILE = tmp_path / "missing.yaml"
    resp = post_json(writer_client, [event()])
    assert resp.status_code == 503 and "masking rules" in resp.json()["error"]["message"]
    assert not IngestBatch.objects.exists()


# --------------------------------------------------------------------------- hand-off


@pytest.mark.django_db(transaction=True)
def test_batch_is_committed_before_the_doorbell_rings(writer_client, monkeypatch):
    seen = []

    def delay(batch_id):
        seen.append((connection.in_atomic_block, IngestBatch.objects.filter(pk=batch_id).exists()))

    monkeypatch.setattr("apps.ingest.tasks.detect_batch.delay", delay)
    resp = post_json(writer_client, [event()])
    assert resp.status_code == 202
    assert seen == [(False, True)]


def test_a_broker_outage_still_answers_202(writer_client, monkeypatch, django_capture_on_commit_callbacks):
    def broken(batch_id):
        raise ConnectionError("broker down")

    monkeypatch.setattr("apps.ingest.tasks.detect_batch.delay", broken)
    with django_capture_on_commit_callbacks(execute=True):
        resp = post_json(writer_client, [event()])
    assert resp.status_code == 202
    assert IngestBatch.objects.get(pk=resp.json()["batch_id"]).status == BatchStatus.PENDING


def test_intake_sheds_load_with_429_when_detection_is_far_behind(writer_client, no_doorbell, settings):
    from apps.ingest import backpressure

    settings.INGEST_MAX_PENDING_EVENTS = 10
    backpressure.reset()
    assert post_json(writer_client, [event()] * 11).status_code == 202  # 11 now pending (no worker here)
    backpressure.reset()
    resp = post_json(writer_client, [event()])
    assert resp.status_code == 429
    assert resp["Retry-After"] == str(backpressure.RETRY_AFTER_SECONDS)
    assert resp.json()["error"]["code"] == "backlogged"
    assert IngestBatch.objects.count() == 1  # the refused request stored nothing
    # Once the backlog drains, intake accepts again.
    IngestBatch.objects.update(status=BatchStatus.DONE)
    backpressure.reset()
    assert post_json(writer_client, [event()]).status_code == 202
