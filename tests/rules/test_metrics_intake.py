"""POST /api/v1/metrics: JSON and Prometheus text in, per-minute rollups out, per-sample errors,
the per-tenant series limit, quota, scopes and tenant isolation."""
from __future__ import annotations

import time

import orjson
import pytest

from apps.rules.models import MetricRollup, MetricSeries

URL = "/api/v1/metrics"
PROM = "text/plain; version=0.0.4"


@pytest.fixture
def writer(api, make_token, tenant):
    return api(make_token(tenant, "metrics:write"))


def post_json(client, body, **params):
    suffix = "?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else ""
    return client.post(URL + suffix, data=orjson.dumps(body), content_type="application/json")


def test_json_samples_roll_up_per_series_and_minute(writer, tenant):
    minute = (int(time.time()) // 60 - 1) * 60
    body = [{"name": "node_load1", "labels": {"instance": "web-1"}, "value": v, "ts": minute + i}
            for i, v in enumerate([1.0, 3.0, 2.0])]
    body.append({"name": "node_load1", "labels": {"instance": "web-2"}, "value": 7, "ts": minute + 5})
    resp = post_json(writer, {"samples": body})
    assert resp.status_code == 202, resp.content
    assert resp.json() == {"accepted": 4, "rejected": [], "series_created": 2}
    series = MetricSeries.objects.get(tenant=tenant, labels={"instance": "web-1"})
    r = MetricRollup.objects.get(series=series)
    assert (r.count, r.sum, r.min, r.max, r.sumsq, r.last) == (3, 6.0, 1.0, 3.0, 14.0, 2.0)
    assert r.minute.timestamp() == minute
    # The same series again: no new series, the rollup grows.
    resp = post_json(writer, [{"name": "node_load1", "labels": {"instance": "web-1"}, "value": 10, "ts": minute + 30}])
    assert resp.json()["series_created"] == 0
    r.refresh_from_db()
    assert (r.count, r.sum, r.max, r.last) == (4, 16.0, 10.0, 10.0)
    assert MetricRollup.objects.count() == 2


def test_prometheus_text_is_parsed_with_the_client_library(writer, tenant):
    text = (
        "# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.\n"
        "# TYPE node_cpu_seconds_total counter\n"
        'node_cpu_seconds_total{cpu="0",mode="idle"} 1234.5\n'
        'node_cpu_seconds_total{cpu="0",mode="user"} 99\n'
        "# TYPE up gauge\n"
        "up 1\n"
        "# TYPE broken gauge\n"
        "broken NaN\n"
    )
    resp = writer.post(URL, data=text, content_type=PROM)
    assert resp.status_code == 202, resp.content
    body = resp.json()
    assert body["accepted"] == 3 and body["series_created"] == 3
    assert body["rejected"] == [{"index": 3, "error": "value: nan is not stored (NaN and +-Inf are rejected: "
                                                      "rollups need finite values)"}]
    assert set(MetricSeries.objects.filter(tenant=tenant).values_list("name", flat=True)) == {
        "node_cpu_seconds_total", "up"}
    assert MetricSeries.objects.get(name="up").labels == {}


def test_each_bad_sample_is_rejected_naming_the_field(writer):
    now = time.time()
    body = [
        {"name": "ok_metric", "value": 1},
        {"name": "9bad", "value": 1},
        {"name": "m", "labels": {"a": 1}, "value": 1},
        {"name": "m", "value": "high"},
        {"name": "m", "value": 1, "ts": now - 30 * 86400},
        {"name": "m", "value": 1, "colour": "red"},
        {"name": "m", "value": 1, "ts": "yesterday"},
    ]
    resp = post_json(writer, body)
    assert resp.status_code == 202
    errors = {r["index"]: r["error"] for r in resp.json()["rejected"]}
    assert resp.json()["accepted"] == 1
    assert errors[1].startswith("name: invalid metric name '9bad'")
    assert errors[2] == "labels.a: must be a string, got int"
    assert errors[3] == "value: must be a number, got 'high'"
    assert errors[4].startswith("ts: ") and "outside the accepted range" in errors[4]
    assert errors[5].startswith("colour: unknown field")
    assert errors[6].startswith("ts: 'yesterday' is not an RFC 3339 timestamp")


@pytest.mark.parametrize("ts", [1e20, 1e308, -1e308, 253402300800, "0001-01-01T00:00:00+01:00",
                                "9999-12-31T23:59:59-01:00"])
def test_a_ts_no_date_can_hold_is_rejected_naming_ts_and_the_range(writer, ts):
    # The message showing the time could not show it: a 500 (OverflowError) for 1e20, a bare
    # "year 0 is out of range" without the field for 0001-01-01T00:00:00+01:00.
    resp = post_json(writer, [{"name": "ok_metric", "value": 1}, {"name": "m", "value": 1, "ts": ts}])
    assert resp.status_code == 202, resp.content
    assert resp.json()["accepted"] == 1
    [rejected] = resp.json()["rejected"]
    assert rejected["index"] == 1 and rejected["error"].startswith("ts: ")
    assert "outside the accepted range: 7d in the past to 5m in the future" in rejected["error"]


def test_an_integer_value_too_large_for_a_float_is_rejected_naming_value(writer):
    # Prometheus text may carry one (JSON's become floats); was a 500 (OverflowError in isfinite).
    resp = writer.post(URL, data=b"ok_metric 1\nbig " + b"9" * 400 + b"\n", content_type=PROM)
    assert resp.status_code == 202, resp.content
    assert resp.json()["accepted"] == 1
    [rejected] = resp.json()["rejected"]
    assert rejected["index"] == 1 and rejected["error"].startswith("value: ")


def test_ts_in_epoch_milliseconds_is_read_as_the_logs_read_it(writer):
    # Was "year 58889 is out of range": a JSON ts past 1e11 is milliseconds (1e11 s is the year 5138).
    minute = (int(time.time()) // 60 - 1) * 60
    resp = post_json(writer, [{"name": "m", "value": 1, "ts": (minute + 30) * 1000 + 250},
                              {"name": "m", "value": 2, "ts": (minute + 31) * 1_000_000}])
    assert resp.status_code == 202, resp.content
    assert resp.json() == {"accepted": 2, "rejected": [], "series_created": 1}
    rollup = MetricRollup.objects.get()
    assert rollup.minute.timestamp() == minute and rollup.last_ts.timestamp() == minute + 31
    assert (rollup.count, rollup.last) == (2, 2.0)


@pytest.mark.parametrize("data,content_type,fragment", [
    (b"{not json", "application/json", "body is not valid JSON"),
    (b'{"name": "x"}', "application/json", "body must be a JSON array"),
    (b"metric{ 1\n", PROM, "not valid Prometheus text"),
    (b"", PROM, "empty body"),  # was 202 "accepted": 0
    (b" \n\n", PROM, "empty body"),
    (b"", "application/json", "empty body"),
    (b"m 1 " + b"9" * 400 + b"\n", PROM, "timestamp"),  # too large for a float: was a 500 (OverflowError)
])
def test_a_body_that_can_never_be_valid_is_422(writer, data, content_type, fragment):
    resp = writer.post(URL, data=data, content_type=content_type)
    assert resp.status_code == 422
    assert fragment in resp.json()["error"]["message"]
    assert not MetricSeries.objects.exists()


def test_series_limit_rejects_new_series_per_sample_and_keeps_known_ones(writer, tenant, settings):
    settings.METRICS_MAX_SERIES_PER_TENANT = 3
    first = post_json(writer, [{"name": "m", "labels": {"i": str(i)}, "value": 1} for i in range(2)])
    assert first.json()["series_created"] == 2
    body = [{"name": "m", "labels": {"i": str(i)}, "value": 1} for i in range(5)]
    resp = post_json(writer, body)
    out = resp.json()
    assert resp.status_code == 202
    assert out["accepted"] == 3 and out["series_created"] == 1  # two known + one new fit
    assert [r["index"] for r in out["rejected"]] == [3, 4]
    assert "limit of 3 series (METRICS_MAX_SERIES_PER_TENANT)" in out["rejected"][0]["error"]
    assert MetricSeries.objects.filter(tenant=tenant).count() == 3


def test_quota_refuses_with_429_and_counts_samples(writer, settings, clean_redis):
    settings.INGEST_TENANT_EVENTS_PER_SECOND = 1  # 10 samples per 10 s window
    assert post_json(writer, [{"name": "m", "value": i} for i in range(8)]).status_code == 202
    resp = post_json(writer, [{"name": "m", "value": i} for i in range(5)])
    assert resp.status_code == 429 and "Retry-After" in resp
    assert MetricRollup.objects.get().count == 8


def test_body_over_the_sample_limit_is_413(writer, settings):
    settings.METRICS_MAX_SAMPLES = 3
    resp = post_json(writer, [{"name": "m", "value": i} for i in range(4)])
    assert resp.status_code == 413 and "METRICS_MAX_SAMPLES" in resp.json()["error"]["message"]


def test_scopes_and_tenants(api, make_token, tenant, other_tenant):
    sample = [{"name": "m", "value": 1}]
    assert post_json(api(make_token(tenant, "logs:write")), sample).status_code == 403
    assert post_json(api(), sample).status_code == 401
    platform = api(make_token(None, "metrics:write"))
    assert post_json(platform, sample).status_code == 400  # must name ?tenant=
    assert post_json(platform, sample, tenant="globex").status_code == 202
    tenant_client = api(make_token(tenant, "metrics:write"))
    assert post_json(tenant_client, sample, tenant="globex").status_code == 403
    assert post_json(tenant_client, sample).status_code == 202
    # One series each: the same name and labels are separate series in separate tenants.
    assert MetricSeries.objects.filter(tenant=tenant).count() == 1
    assert MetricSeries.objects.filter(tenant=other_tenant).count() == 1
