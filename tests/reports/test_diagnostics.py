"""Diagnostic reports: the lines of one trace across plugins (and nothing else), evidence, the
NDJSON and zip exports, and the export check over raw planted secrets (the masking corpus)."""
from __future__ import annotations

import io
import zipfile
from datetime import timedelta

import orjson
import pytest

from apps.alerts.models import TimelineEntry
from apps.reports.diagnostics import build_report, generate
from apps.reports.models import ReportRun
from apps.tenants.models import Plugin
from tests.ingest.test_masking_corpus import ORDINARY, PLANTED, PLANTED_FIELDS
from tests.ops.factories import make_delivery

from .conftest import scrape

pytestmark = pytest.mark.django_db


@pytest.fixture
def incident(frozen, tenant, plugin, second_plugin, other_tenant, make_alert, make_record):
    """An alert of acme/checkout on trace-a, and the stored lines around it."""
    now = frozen()
    alert = make_alert(first_seen=now - timedelta(minutes=4), last_seen=now, trace_ids=["trace-a"],
                       rule_key="plugin-error-burst", rule_version=3)
    globex_plugin = Plugin.objects.create(tenant=other_tenant, slug="checkout")
    lines = {
        "checkout": make_record(tenant, plugin, now - timedelta(minutes=5), "checkout call failed", trace_id="trace-a"),
        "payments": make_record(tenant, second_plugin, now - timedelta(minutes=2), "payment declined",
                                trace_id="trace-a", level="WARNING"),
        "early": make_record(tenant, second_plugin, now - timedelta(minutes=33), "retry scheduled", trace_id="trace-a"),
        "evidence": make_record(tenant, plugin, now - timedelta(minutes=1), "error burst line",
                                rule_keys=["plugin-error-burst"]),
        "other_trace": make_record(tenant, plugin, now - timedelta(minutes=3), "unrelated", trace_id="trace-b"),
        "other_tenant": make_record(other_tenant, globex_plugin, now - timedelta(minutes=3), "globex line",
                                    trace_id="trace-a"),
        "too_late": make_record(tenant, second_plugin, now + timedelta(minutes=31), "much later", trace_id="trace-a"),
    }
    return alert, lines


def test_report_gathers_one_trace_across_two_plugins_plus_evidence(incident):
    alert, lines = incident
    report = build_report(alert)

    got = {line["id"]: line for line in report.lines}
    wanted = {lines[k].pk for k in ("checkout", "payments", "early", "evidence")}
    assert set(got) == wanted  # not the other trace, not the other tenant, not outside the window
    assert {got[lines["checkout"].pk]["plugin"], got[lines["payments"].pk]["plugin"]} == {"checkout", "payments"}
    assert got[lines["evidence"].pk]["source"] == ["evidence"]
    assert got[lines["payments"].pk]["source"] == ["trace"]
    assert [line["id"] for line in report.lines] == [lines[k].pk for k in ("early", "checkout", "payments", "evidence")]
    assert report.summary["report"]["lines_by_plugin"] == {"checkout": 2, "payments": 2}
    assert report.summary["rule"] == {"key": "plugin-error-burst", "version": 3}


def test_window_is_a_setting(incident, settings):
    alert, lines = incident
    settings.DIAGNOSTIC_WINDOW_SECONDS = 60
    ids = {line["id"] for line in build_report(alert).lines}
    assert lines["early"].pk not in ids and lines["checkout"].pk in ids


def test_samples_stand_in_when_no_evidence_line_is_stored(frozen, make_alert):
    alert = make_alert(trace_ids=[], samples=["ERROR boom [MASKED:password]"])
    report = build_report(alert)
    assert [(line["message"], line["source"]) for line in report.lines] == [("ERROR boom [MASKED:password]", ["sample"])]
    assert report.violation_total == 0


def test_ndjson_and_zip_contents(incident):
    alert, lines = incident
    TimelineEntry.objects.create(alert=alert, at=alert.created_at, kind="created", message="opened by rule")
    make_delivery(alert, attempts=[False, True])

    _, ndjson = generate(alert, "ndjson")
    rows = [orjson.loads(line) for line in ndjson.splitlines()]
    assert [r["id"] for r in rows] == [lines[k].pk for k in ("early", "checkout", "payments", "evidence")]
    assert rows[1]["message"] == "checkout call failed" and rows[1]["trace_id"] == "trace-a"

    _, body = generate(alert, "zip")
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert sorted(archive.namelist()) == ["lines.ndjson", "report.json"]
        summary = orjson.loads(archive.read("report.json"))
        assert archive.read("lines.ndjson") == ndjson
    assert summary["alert"]["id"] == alert.pk and summary["alert"]["trace_ids"] == ["trace-a"]
    assert summary["rule"] == {"key": "plugin-error-burst", "version": 3}
    assert [e["message"] for e in summary["timeline"]] == ["opened by rule"]
    assert [a["success"] for a in summary["deliveries"][0]["attempts"]] == [False, True]
    assert summary["report"]["lines"] == 4 and summary["report"]["masking_violations"] == 0
    assert ReportRun.objects.filter(alert_id=alert.pk).count() == 2


def _all_strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *_all_strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in _all_strings(v)]
    return [str(value)]


def test_planted_secrets_never_leave_unmasked_and_are_counted(frozen, tenant, plugin, make_alert, make_record):
    now = frozen()
    alert = make_alert(first_seen=now, last_seen=now, trace_ids=["trace-s"])
    for line, _ in PLANTED:
        make_record(tenant, plugin, now, line, trace_id="trace-s")
    for fields, _ in PLANTED_FIELDS:
        make_record(tenant, plugin, now, "structured", trace_id="trace-s", fields=fields)
    delivery = make_delivery(alert, attempts=[False])
    delivery.attempt_log.update(error="receiver echoed Authorization: Bearer 9f8e7d6c5b4a3f2e1d0c")
    secrets = {s for _, found in PLANTED + PLANTED_FIELDS for s in found} | {"9f8e7d6c5b4a3f2e1d0c"}
    before = scrape().get(("monitoring_masking_violation_total", ()), 0)

    _, body = generate(alert, "zip")

    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        summary = orjson.loads(archive.read("report.json"))
        raw = archive.read("lines.ndjson") + archive.read("report.json")
        texts = _all_strings(summary) + [s for row in archive.read("lines.ndjson").splitlines()
                                        for s in _all_strings(orjson.loads(row))]
    leaked = sorted(s for s in secrets if s.encode() in raw or any(s in t for t in texts))
    assert not leaked, f"unmasked in the export: {leaked}"
    violations = summary["report"]["masking_violations"]
    assert violations >= len(PLANTED) + len(PLANTED_FIELDS) + 1  # every planted line, and the echoed one
    after = scrape()
    assert after[("monitoring_masking_violation_total", ())] == before + violations
    assert after[("monitoring_diagnostic_report_seconds_count", ())] >= 1


def test_ordinary_lines_pass_the_export_check_untouched(frozen, tenant, plugin, make_alert, make_record):
    now = frozen()
    alert = make_alert(first_seen=now, last_seen=now, trace_ids=["trace-o"])
    for line in ORDINARY:
        make_record(tenant, plugin, now, line, trace_id="trace-o")
    masked_line = make_record(tenant, plugin, now, "login password=[MASKED:password] for bob", trace_id="trace-o")

    report = build_report(alert)

    assert report.violation_total == 0
    messages = {line["id"]: line["message"] for line in report.lines}
    assert sorted(m for i, m in messages.items() if i != masked_line.pk) == sorted(ORDINARY)
    assert messages[masked_line.pk] == "login password=[MASKED:password] for bob"


def test_who_acted_is_an_identifier_not_a_leaked_secret(frozen, make_alert):
    """A token acting on an alert is "token:<name>" in its timeline, which the password detector
    reads as "token: <secret>": the export check leaves actors alone, as it does trace ids."""
    now = frozen()
    alert = make_alert(first_seen=now, last_seen=now, trace_ids=["trace-t"])
    TimelineEntry.objects.create(alert=alert, at=now, kind="acknowledged", actor_label="token:ci-bot")

    report = build_report(alert)

    assert report.violation_total == 0
    assert [e["actor"] for e in report.summary["timeline"] if e["kind"] == "acknowledged"] == ["token:ci-bot"]


def test_generation_time_lands_in_the_histogram(incident):
    alert, _ = incident
    before = scrape()
    generate(alert, "ndjson")
    generate(alert, "page")
    after = scrape()
    key = ("monitoring_diagnostic_report_seconds_count", ())
    assert after[key] == before.get(key, 0) + 2
    assert after[("monitoring_diagnostic_report_seconds_bucket", (("le", "+Inf"),))] == after[key]
    assert after[("monitoring_diagnostic_report_seconds_sum", ())] > 0
