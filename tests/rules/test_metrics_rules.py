"""Metric rules fire and resolve on a controllable clock: threshold (``for`` and ``consecutive``,
group_by, divide_by, age), anomaly (direction, min_samples, floor), absence, the system pack, and
the claimed schedule (two evaluators never take one rule twice)."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from django.conf import settings as dj_settings
from django.db import connection

from apps.alerts.models import ACTIVE_STATES, Alert, AlertState, TimelineEntry
from apps.core import clock
from apps.core.vocabulary import AlertSource
from apps.rules import metric_eval
from apps.rules.metrics import Sample, store_samples
from apps.rules.models import LogRule
from apps.rules.packs import read_pack_dir
from apps.rules.services import rule_create, rules_sync
from tests.alerts.conftest import Clock

T0 = datetime(2026, 3, 2, 12, 0, 30, tzinfo=timezone.utc)


@pytest.fixture
def frozen(monkeypatch) -> Clock:
    fake = Clock(T0)
    monkeypatch.setattr(clock, "now", fake)
    return fake


def push(tenant, name: str, value: float, at: datetime, **labels) -> None:
    store_samples(tenant_id=tenant.pk, samples=[Sample(0, name, tuple(sorted(labels.items())), value, at.timestamp())],
                  now=at)


def threshold_rule(rid: str = "cpu", **extra) -> dict:
    rule = {"id": rid, "kind": "threshold", "name": "CPU high", "metric": "cpu", "group_by": ["instance"],
            "aggregation": "avg", "window": "1m", "op": ">", "value": 0.9, "severity": "critical"}
    rule.update(extra)
    return rule


def tick(frozen: Clock, tenant, value: float | None, *, metric: str = "cpu", **labels) -> int:
    """One minute later: a sample (unless None), then one scheduled evaluation."""
    now = frozen.advance(minutes=1)
    if value is not None:
        push(tenant, metric, value, now - timedelta(seconds=5), **(labels or {"instance": "web-1"}))
    return metric_eval.evaluate_due()


def active(rule_key: str):
    return Alert.objects.filter(rule_key=rule_key, state__in=ACTIVE_STATES)


@pytest.mark.django_db
def test_threshold_with_for_fires_after_the_duration_follows_the_value_and_resolves(frozen, tenant):
    rule_create(raw=threshold_rule(**{"for": "3m"}), actor="test")
    for _ in range(3):  # violating at +1, +2, +3 min: pending for 0, 1, 2 minutes
        tick(frozen, tenant, 0.95)
        assert not active("cpu").exists()
    tick(frozen, tenant, 0.95)  # pending for 3 minutes
    alert = active("cpu").get()
    assert (alert.source, alert.value, alert.threshold, alert.severity) == (AlertSource.METRIC_RULE, 0.95, 0.9,
                                                                             "critical")
    assert alert.labels == {"instance": "web-1"} and alert.annotations["metric"] == "cpu"
    assert alert.title == "CPU high: instance=web-1"
    # The window is rounded out to whole minutes: at hh:mm:30 a 1m window reads two minute rollups.
    tick(frozen, tenant, 0.99)
    alert.refresh_from_db()
    assert alert.value == pytest.approx(0.97) and active("cpu").count() == 1  # absorbed, value follows
    assert TimelineEntry.objects.filter(alert=alert, kind="occurrence", message="value 0.97").exists()
    tick(frozen, tenant, 0.5)
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED and alert.resolved_by == "metric-rule"
    line = TimelineEntry.objects.get(alert=alert, kind="resolved")
    assert line.message.startswith("condition cleared: avg(cpu) over 1m = 0.745")


@pytest.mark.django_db
def test_consecutive_needs_n_violations_in_a_row(frozen, tenant):
    rule_create(raw=threshold_rule(consecutive=3), actor="test")
    tick(frozen, tenant, 0.95)
    tick(frozen, tenant, 0.95)
    tick(frozen, tenant, 0.2)  # the streak breaks (the window reads this minute and the one before)
    tick(frozen, tenant, 0.95)  # avg 0.575
    tick(frozen, tenant, 0.95)  # 1
    tick(frozen, tenant, 0.95)  # 2
    assert not active("cpu").exists()
    tick(frozen, tenant, 0.95)  # 3
    assert active("cpu").count() == 1


@pytest.mark.django_db
def test_group_by_makes_one_alert_per_group_and_matchers_select_series(frozen, tenant, other_tenant):
    rule_create(raw=threshold_rule(where={"env": "=~prod|staging"}), actor="test")
    now = frozen.advance(minutes=1)
    for instance, env, value in (("a", "prod", 0.95), ("b", "staging", 0.97), ("c", "dev", 0.99), ("d", "prod", 0.1)):
        push(tenant, "cpu", value, now, instance=instance, env=env)
    push(other_tenant, "cpu", 0.99, now, instance="a", env="prod")
    metric_eval.evaluate_due()
    fired = {(a.tenant.slug, a.labels["instance"]) for a in active("cpu")}
    assert fired == {("acme", "a"), ("acme", "b"), ("globex", "a")}


@pytest.mark.django_db
def test_divide_by_and_age(frozen, tenant):
    rule_create(raw={"id": "db-conn", "kind": "threshold", "name": "Connections", "metric": "pg_stat_activity_count",
                     "divide_by": "pg_settings_max_connections", "group_by": ["instance"], "aggregation": "last",
                     "window": "5m", "op": ">", "value": 0.9, "severity": "warning"}, actor="test")
    rule_create(raw={"id": "backup", "kind": "threshold", "name": "Backup stale", "metric": "backup_ts",
                     "aggregation": "age", "window": "1h", "op": ">", "value": "26h", "severity": "critical"},
                actor="test")
    now = frozen.advance(minutes=1)
    push(tenant, "pg_settings_max_connections", 100, now, instance="db1")
    push(tenant, "pg_stat_activity_count", 60, now, instance="db1", state="active")
    push(tenant, "pg_stat_activity_count", 35, now, instance="db1", state="idle")  # 95 of 100
    push(tenant, "backup_ts", (now - timedelta(hours=27)).timestamp(), now)
    metric_eval.evaluate_due()
    conn = active("db-conn").get()
    assert conn.value == pytest.approx(0.95)
    assert active("backup").get().value == pytest.approx(27 * 3600)
    now = frozen.advance(minutes=1)
    push(tenant, "pg_stat_activity_count", 10, now, instance="db1", state="idle")
    push(tenant, "backup_ts", now.timestamp(), now)
    metric_eval.evaluate_due()
    assert not active("db-conn").exists() and not active("backup").exists()  # 70/100; backup fresh


def anomaly_rule(**extra) -> dict:
    rule = {"id": "latency-anomaly", "kind": "anomaly", "name": "Latency anomaly", "metric": "latency_ms",
            "window": "5m", "baseline": "previous", "threshold": 3, "min_samples": 30, "severity": "warning"}
    rule.update(extra)
    return rule


def baseline_hour(frozen: Clock, tenant, level: float = 100.0) -> None:
    """An hour of per-minute samples alternating level +- 2 (sigma about 2), no evaluation."""
    for i in range(60):
        now = frozen.advance(minutes=1)
        push(tenant, "latency_ms", level + (2 if i % 2 else -2), now - timedelta(seconds=5), service="api")


@pytest.mark.django_db
@pytest.mark.parametrize("direction,value,fires", [("up", 130, True), ("down", 130, False), ("both", 70, True),
                                                   ("up", 104, False)])
def test_anomaly_direction(frozen, tenant, direction, value, fires):
    baseline_hour(frozen, tenant)
    rule_create(raw=anomaly_rule(direction=direction), actor="test")
    for _ in range(5):
        tick(frozen, tenant, value, metric="latency_ms", service="api")
    alert = active("latency-anomaly").first()
    assert (alert is not None) == fires
    if fires:
        assert alert.baseline["window"] == "previous" and alert.baseline["mean"] == pytest.approx(100, abs=1)
        assert abs(alert.baseline["z"]) >= 3 and alert.threshold == 3


@pytest.mark.django_db
def test_anomaly_min_samples_floor_and_resolve(frozen, tenant):
    baseline_hour(frozen, tenant, level=100)
    rule_create(raw=anomaly_rule(min_samples=120), actor="test")  # only 60 baseline minutes
    tick(frozen, tenant, 200, metric="latency_ms", service="api")
    assert not active("latency-anomaly").exists()
    rule_create(raw=anomaly_rule(id="floored", floor=1000), actor="test")  # everything below the floor
    rule_create(raw=anomaly_rule(id="plain"), actor="test")
    tick(frozen, tenant, 200, metric="latency_ms", service="api")
    assert not active("floored").exists()
    assert active("plain").count() == 1
    for _ in range(6):  # the spike leaves the 5-minute window
        tick(frozen, tenant, 100, metric="latency_ms", service="api")
    assert not active("plain").exists()
    assert Alert.objects.get(rule_key="plain").resolved_by == "metric-rule"


@pytest.mark.django_db
def test_absence_fires_after_silence_and_resolves_on_the_next_sample(frozen, tenant):
    rule_create(raw={"id": "silent", "kind": "absence", "name": "Exporter silent", "metric": "up",
                     "group_by": ["job"], "for": "10m", "severity": "critical"}, actor="test")
    tick(frozen, tenant, 1, metric="up", job="node")
    for _ in range(9):
        tick(frozen, tenant, None)
    assert not active("silent").exists()
    tick(frozen, tenant, None)  # 10 minutes since the sample
    alert = active("silent").get()
    assert alert.labels == {"job": "node"} and "no up sample for 10m" in alert.summary
    tick(frozen, tenant, 1, metric="up", job="node")
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED and alert.resolved_by == "metric-rule"


@pytest.mark.django_db
def test_system_pack_validates_syncs_and_its_cpu_rule_fires_after_five_minutes(frozen, tenant):
    packs = read_pack_dir(Path(dj_settings.BASE_DIR) / "fixtures" / "metric_rules")
    report = rules_sync(specs=packs.specs, actor="test", sources=packs.sources, disable_missing=packs.source_prefix)
    assert set(report.created) >= {"system-cpu-high", "system-memory-high", "system-disk-85", "system-disk-95",
                                   "system-service-down", "system-db-connections", "system-backup-stale"}
    assert set(LogRule.objects.values_list("kind", flat=True)) == {"threshold"}
    cpu = "instance:node_cpu_utilisation:rate5m"
    for _ in range(5):  # above 90 % at five evaluations, 0..4 minutes pending
        tick(frozen, tenant, 0.97, metric=cpu, instance="db-1:9100")
        assert not active("system-cpu-high").exists()
    tick(frozen, tenant, 0.97, metric=cpu, instance="db-1:9100")  # 5 minutes above
    assert active("system-cpu-high").get().severity == "critical"


@pytest.mark.django_db
def test_metric_rules_are_not_matched_against_log_lines(tenant):
    from apps.rules.selectors import load_snapshot

    rule_create(raw=threshold_rule(), actor="test")
    assert load_snapshot().specs == ()


@pytest.mark.django_db(transaction=True)
def test_two_evaluators_claim_each_due_rule_once(frozen, tenant):
    for i in range(20):
        rule_create(raw=threshold_rule(f"r{i}"), actor="test")
    barrier = threading.Barrier(2)
    won: list[list[int]] = [[], []]

    def claim(slot: int) -> None:
        try:
            barrier.wait(5)
            won[slot] = metric_eval.claim_due(now=T0)
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(won[0] + won[1]) == sorted(LogRule.objects.values_list("pk", flat=True))
    assert not set(won[0]) & set(won[1])
    assert metric_eval.claim_due(now=T0 + timedelta(seconds=5)) == []  # next slot is 15 s later


@pytest.mark.django_db
def test_metric_panel_renders_value_threshold_and_a_sparkline(frozen, tenant):
    from django.template import Context, Template

    rule_create(raw=threshold_rule(), actor="test")
    for value in (0.5, 0.95, 0.99):
        tick(frozen, tenant, value)
    alert = active("cpu").get()
    html = Template("{% load metric_panel %}{% metric_panel alert %}").render(Context({"alert": alert}))
    assert "threshold 0.9" in html and "<polyline" in html and "3 minutes" in html
    log_alert = Alert(source="log_rule", annotations={})
    assert Template("{% load metric_panel %}{% metric_panel a %}").render(Context({"a": log_alert})).strip() == ""


@pytest.mark.django_db
def test_groups_that_are_fine_keep_no_state_so_an_evaluation_writes_nothing_for_them(frozen, tenant):
    """State rows are made by a violation and removed once the group is clean again (its alert
    resolved, its streak reset): the quiet groups of a rule, however many, are neither locked nor
    written every 15 s. A streak that broke starts over, as before."""
    from django.test.utils import CaptureQueriesContext

    from apps.rules.models import MetricRuleState

    rule_create(raw=threshold_rule(consecutive=2), actor="test")
    now = frozen.advance(minutes=1)
    for i in range(30):
        push(tenant, "cpu", 0.1, now - timedelta(seconds=5), instance=f"quiet-{i}")
    metric_eval.evaluate_due()
    assert not MetricRuleState.objects.exists()

    tick(frozen, tenant, 0.95)  # web-1 violates once: a row holds its streak
    assert MetricRuleState.objects.get().consecutive == 1
    tick(frozen, tenant, 0.1)  # the streak broke (the window averages this minute and the last: 0.525)
    assert not MetricRuleState.objects.exists()
    tick(frozen, tenant, 0.1)
    tick(frozen, tenant, 0.95)  # 0.525
    assert not MetricRuleState.objects.exists()
    tick(frozen, tenant, 0.95)
    tick(frozen, tenant, 0.95)  # the second in a row: it fires, from a streak that started over
    assert MetricRuleState.objects.get().consecutive == 2 and active("cpu").count() == 1
    tick(frozen, tenant, 0.1)
    assert not active("cpu").exists() and not MetricRuleState.objects.exists()  # resolved, and forgotten

    frozen.advance(minutes=1)
    with CaptureQueriesContext(connection) as queries:
        metric_eval.evaluate_due()
    writes = [q["sql"] for q in queries.captured_queries if q["sql"].split()[0] in ("UPDATE", "INSERT", "DELETE")
              and "rules_metricrulestate" in q["sql"]]
    assert writes == []


@pytest.mark.django_db(transaction=True)
def test_two_overlapping_evaluations_of_a_rule_take_turns(frozen, tenant, monkeypatch):
    """An evaluation that overran its claimed interval overlaps the next one of the same rule. A
    group that starts violating has no state row yet: both would insert it and the second fail on
    the unique index, losing its step. They take turns on the rule's row instead."""
    from apps.rules.models import MetricRuleState
    from apps.rules.spec import parse_rule

    rule_create(raw=threshold_rule(), actor="test")
    now = frozen.advance(minutes=1)
    push(tenant, "cpu", 0.95, now - timedelta(seconds=5), instance="web-1")
    rule = LogRule.objects.get(key="cpu")
    spec = parse_rule(rule.spec)
    both = threading.Barrier(2, timeout=2)  # met only if both reach the step at once
    real_step = metric_eval._step

    def step(*args, **kwargs):
        try:
            both.wait()
        except threading.BrokenBarrierError:
            pass  # the other one waits for the rule: it comes after this one's commit
        return real_step(*args, **kwargs)

    monkeypatch.setattr(metric_eval, "_step", step)
    errors: list[BaseException] = []

    def evaluate() -> None:
        try:
            metric_eval.evaluate_rule(spec, now=now, rule_pk=rule.pk)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=evaluate) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert MetricRuleState.objects.get().consecutive == 2  # both steps, one after the other
    assert active("cpu").count() == 1
