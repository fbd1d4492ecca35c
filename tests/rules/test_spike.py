"""Spike rules: ElastAlert's spike_height / spike_type / threshold_ref / threshold_cur /
alert_on_new_data semantics on the engine's exactly-once windows, fired on batches (a rise) and on
the claimed schedule (a drop), resolved by the schedule once the spike is over."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from apps.alerts.models import ACTIVE_STATES, Alert, AlertState
from apps.alerts.services import alert_resolve
from apps.core import clock
from apps.ingest import tenancy
from apps.ingest.codec import encode_events
from apps.ingest.models import BatchStatus, IngestBatch
from apps.ingest.processing import process_batch
from apps.rules import metric_eval, spike
from apps.rules.engine import detect
from apps.rules.log_kind_spec import Spike
from apps.rules.models import LogRule, WindowState
from apps.rules.services import RuleInvalid, override_set, rule_create, validate_rule
from apps.rules.spec import dump_pack, load_pack
from tests.alerts.conftest import Clock

from .conftest import T0, burst, rule_dict
from .test_admin import form_data


def spike_rule(rid: str = "err-spike", **extra) -> dict:
    raw = rule_dict(rid, **extra)
    for key in ("threshold", "cooldown"):
        raw.pop(key)
    raw.update(kind="spike", timeframe="1m", spike_height=3, spike_type="up")
    raw.update(extra)
    return raw


@pytest.fixture
def frozen(monkeypatch) -> Clock:
    fake = Clock(T0)
    monkeypatch.setattr(clock, "now", fake)
    return fake


def send(frozen: Clock, at_s: float, n: int, **kw):
    """``n`` matching events at T0 + at_s, received then (the clock moves there too)."""
    at = T0 + timedelta(seconds=at_s)
    frozen.current = at
    return detect(burst(n, start=at, step=0.001, **kw), received_at=at)


def evaluate(frozen: Clock, at_s: float) -> int:
    frozen.current = T0 + timedelta(seconds=at_s)
    return metric_eval.evaluate_due()


def steady(frozen: Clock, until_s: int, every: int = 30, n: int = 3, **kw) -> None:
    for t in range(0, until_s + 1, every):
        send(frozen, t, n, **kw)


def active():
    return Alert.objects.filter(state__in=ACTIVE_STATES)


# --------------------------------------------------------------------------- the condition


@pytest.mark.parametrize("ref, cur, kind, expected", [
    (10, 30, "up", True),     # exactly spike_height x ref counts (>=)
    (10, 29, "up", False),
    (10, 30, "down", False),
    (30, 10, "down", True),   # exactly ref / spike_height counts (<=)
    (30, 11, "down", False),
    (30, 10, "both", True),
    (10, 30, "both", True),
    (10, 20, "both", False),
    (0, 5, "up", True),       # from nothing: ElastAlert's cur >= 0 x height (threshold_ref guards it)
    (0, 0, "both", False),    # nothing at all is no spike (our one deviation)
    (5, 0, "down", True),     # a drop to zero
])
def test_condition_is_elastalerts_find_matches(ref, cur, kind, expected):
    assert spike.is_spike(spike.Reading(ref, cur), Spike(timeframe_s=60, height=3, type=kind)) is expected


def test_threshold_ref_and_threshold_cur_hold_back_small_counts():
    s = Spike(timeframe_s=60, height=3, type="both", threshold_ref=10, threshold_cur=5)
    assert not spike.is_spike(spike.Reading(9, 100), s)   # reference too small for an up spike
    assert not spike.is_spike(spike.Reading(100, 4), s)   # current too small, even for a drop
    assert spike.is_spike(spike.Reading(100, 5), s) and spike.is_spike(spike.Reading(10, 30), s)


def test_reading_splits_the_window_into_reference_and_current():
    state = {"bucket_s": 2, "buckets": {"0": 4, "58": 1, "60": 2, "118": 7}}
    # at 120: current (60, 120] -> buckets 118 (60 is at the edge: reference); reference (0, 60] -> 58, 60
    assert spike.reading(state, 120, 60) == spike.Reading(ref=3, cur=7)


# --------------------------------------------------------------------------- validation and export


@pytest.mark.parametrize("change, error", [
    ({"spike_height": 1}, "rule 'err-spike': spike_height: must be > 1"),
    ({"spike_height": "x"}, "rule 'err-spike': spike_height: must be a finite number"),
    ({"spike_type": "sideways"}, "rule 'err-spike': spike_type: unknown 'sideways' (use up | down | both)"),
    ({"timeframe": "13h"}, "rule 'err-spike': timeframe: 13h out of range"),
    ({"threshold_ref": -1}, "rule 'err-spike': threshold_ref: must be an integer 0..1000000"),
    ({"alert_on_new_data": "yes"}, "rule 'err-spike': alert_on_new_data: must be true or false"),
    ({"threshold": {"count": 5, "window": "5m"}}, "rule 'err-spike': threshold: unknown key for kind 'spike'"),
    ({"overrides": [{"tenant": "acme", "threshold": {"count": 3}}]},
     "rule 'err-spike': overrides[0].threshold: unknown key"),
])
def test_validation_names_the_rule_and_the_field(change, error):
    with pytest.raises(RuleInvalid) as exc:
        validate_rule({**spike_rule(), **change})
    assert any(e.startswith(error) for e in exc.value.errors), exc.value.errors


def test_missing_spike_fields_are_each_reported():
    raw = spike_rule()
    for key in ("timeframe", "spike_height", "spike_type"):
        raw.pop(key)
    with pytest.raises(RuleInvalid) as exc:
        validate_rule(raw)
    assert [e.split(":")[1].strip() for e in exc.value.errors] == ["timeframe", "spike_height", "spike_type"]


def test_export_round_trips_and_the_row_says_spike(db):
    raw = spike_rule(threshold_ref=5, threshold_cur=10, alert_on_new_data=True, group_by=["tenant_id"],
                     overrides=[{"tenant": "acme", "severity": "warning", "cooldown": "5m"}])
    specs = load_pack(dump_pack([validate_rule(raw)]))
    assert specs == [validate_rule(raw)] and specs[0].spike.height == 3.0
    assert specs == load_pack(dump_pack(specs, "json"))
    rule = rule_create(raw=raw, actor="test")
    assert (rule.kind, rule.window_seconds, rule.threshold_count) == ("spike", 60, 0)
    assert rule.spec["kind"] == "spike" and "threshold" not in rule.spec


def test_api_override_of_a_spike_rule_refuses_a_threshold(tenant):
    rule_create(raw=spike_rule(), actor="test")
    with pytest.raises(RuleInvalid) as exc:
        override_set(key="err-spike", tenant=tenant, body={"threshold": {"count": 2}}, actor="test")
    assert exc.value.errors[0].startswith("rule 'err-spike': override.threshold: unknown key")
    override_set(key="err-spike", tenant=tenant, body={"severity": "warning"}, actor="test")


# --------------------------------------------------------------------------- firing and resolving


@pytest.mark.django_db
def test_up_spike_fires_on_the_batch_with_value_and_baseline_then_resolves(frozen, tenant):
    rule_create(raw=spike_rule(threshold_cur=5), actor="test")
    steady(frozen, 150)  # 3 events every 30 s: current 6 vs reference 6
    assert not active().exists()
    r = send(frozen, 160, 20)
    assert r.alerts_fired == 1
    alert = active().get()
    assert alert.value == 26 and alert.threshold == 3 and alert.source == "log_rule"
    assert alert.baseline["reference"] == 6 and alert.baseline["current"] == 26
    assert alert.baseline["ratio"] == pytest.approx(26 / 6) and alert.baseline["direction"] == "up"
    assert alert.title == "Err Spike: acme/checkout" and alert.plugin.slug == "checkout"
    assert alert.summary.startswith("26 ERROR/FATAL events in the last 1m vs 6 in the 1m before (x4.33")

    # More events while it is open are absorbed; the schedule keeps it while the spike holds.
    assert send(frozen, 170, 4).alerts_absorbed == 1
    evaluate(frozen, 175)
    alert.refresh_from_db()
    assert alert.state == AlertState.OPEN and alert.count == 30

    # A minute later the burst is the reference: 0 now vs 30 before is no up spike -> resolved.
    evaluate(frozen, 235)
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED and alert.resolved_by == "spike-rule"
    assert WindowState.objects.get().alert_id is None


@pytest.mark.django_db
def test_a_new_group_is_not_judged_before_two_timeframes_unless_alert_on_new_data(frozen, tenant):
    rule_create(raw=spike_rule(), actor="test")
    send(frozen, 0, 1)
    assert send(frozen, 90, 50).alerts_fired == 0  # seen for 90 s < 2 x 1m: no baseline yet
    assert send(frozen, 120, 200).alerts_fired == 1  # seen for 2 timeframes: 250 vs 1

    rule_create(raw=spike_rule("eager", alert_on_new_data=True, threshold_cur=10), actor="test")
    assert send(frozen, 200, 12, plugin="search").alerts_fired == 1  # a brand-new group may alert at once
    assert active().filter(rule_key="eager").get().baseline["reference"] == 0


@pytest.mark.django_db
def test_threshold_ref_keeps_a_rise_from_almost_nothing_quiet(frozen, tenant):
    rule_create(raw=spike_rule(threshold_ref=5), actor="test")
    steady(frozen, 150, n=1)  # 2 events per timeframe: below threshold_ref
    assert send(frozen, 160, 100).alerts_fired == 0
    assert not active().exists()


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["down", "both"])
def test_a_drop_fires_on_the_schedule_and_resolves_when_the_windows_are_empty(frozen, tenant, kind):
    rule_create(raw=spike_rule(spike_type=kind, threshold_ref=10), actor="test")
    steady(frozen, 150, every=10, n=5)  # 30 per timeframe, then silence
    assert evaluate(frozen, 160) == 1 and not active().exists()  # 25 vs 30: no drop yet
    evaluate(frozen, 200)  # (140, 200]: 5 vs (80, 140]: 30 -> 5 <= 30 / 3
    alert = active().get()
    assert alert.baseline["direction"] == "down" and (alert.value, alert.baseline["reference"]) == (5, 30)
    assert alert.plugin.slug == "checkout"
    evaluate(frozen, 230)  # 0 vs 20: still a drop
    assert active().exists()
    evaluate(frozen, 300)  # (240, 300]: 0 vs (180, 240]: 0 -> over, under threshold_ref
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED and alert.resolved_by == "spike-rule"


@pytest.mark.django_db
def test_an_up_rule_ignores_a_drop(frozen, tenant):
    rule_create(raw=spike_rule(threshold_ref=10), actor="test")
    steady(frozen, 150, every=10, n=5)
    evaluate(frozen, 200)
    assert not active().exists()


@pytest.mark.django_db
def test_a_spike_resolved_by_hand_is_not_raised_again_while_it_lasts(frozen, tenant):
    rule_create(raw=spike_rule(), actor="test")
    steady(frozen, 150)
    send(frozen, 160, 20)
    alert = active().get()
    alert_resolve(alert_id=alert.pk, actor="ops")
    assert send(frozen, 165, 20).alerts_fired == 0
    evaluate(frozen, 170)
    assert not active().exists() and Alert.objects.count() == 1


@pytest.mark.django_db
def test_the_same_batch_processed_twice_counts_once(frozen, tenant):
    rule_create(raw=spike_rule(), actor="test")
    events = burst(7, start=T0)
    batch = IngestBatch.objects.create(tenant=tenant, received_at=T0, event_count=7, rejected_count=0,
                                       payload=encode_events(events), status=BatchStatus.PENDING)
    tenancy.clear_caches()  # the slug -> id map outlives each test's rolled-back tenant
    assert process_batch(batch_id=batch.pk).events == 7
    assert process_batch(batch_id=batch.pk) is None  # its doorbell rang twice: already DONE
    state = WindowState.objects.get(rule_key="err-spike").state
    assert sum(state["buckets"].values()) == 7 and state["since"] == T0.timestamp()


@pytest.mark.django_db
def test_the_schedule_claims_spike_rules_once(frozen, tenant):
    rule_create(raw=spike_rule(), actor="test")
    assert metric_eval.evaluate_due() == 1
    assert metric_eval.evaluate_due() == 0  # claimed until METRIC_RULES_EVAL_SECONDS later
    assert LogRule.objects.get().next_eval_at is not None


def test_the_commented_examples_in_the_default_pack_validate():
    text = (Path(__file__).resolve().parents[2] / "fixtures/log_rules/default.yaml").read_text()
    block = text.split("# checks that they validate.\n", 1)[1]
    pack = "rules:\n" + "\n".join(line.replace("  # ", "  ", 1).rstrip("#") for line in block.splitlines())
    specs = load_pack(pack)
    assert [(s.id, s.kind) for s in specs] == [("error-spike", "spike"), ("error-rate-anomaly", "log_anomaly")]


# --------------------------------------------------------------------------- admin


ADMIN_ADD = "/admin/rules/logrule/add/"


@pytest.fixture
def superuser_client(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "a-long-password")
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_admin_creates_and_edits_a_spike_rule_with_errors_next_to_the_field(superuser_client):
    options = "{kind: spike, timeframe: 10m, spike_height: 1, spike_type: up}"
    r = superuser_client.post(ADMIN_ADD, form_data(threshold_count="", window="", kind_options=options))
    assert r.status_code == 200
    assert r.context["adminform"].form.errors["kind_options"] == [
        "rule 'errors': spike_height: must be > 1 (a ratio; got 1)"]
    r = superuser_client.post(ADMIN_ADD, form_data(threshold_count="", window="",
                                                   kind_options=options.replace("1,", "4,")))
    assert r.status_code == 302
    rule = LogRule.objects.get()
    assert rule.kind == "spike" and rule.spec["spike_height"] == 4 and "threshold" not in rule.spec
    change = f"/admin/rules/logrule/{rule.pk}/change/"
    page = superuser_client.get(change).content.decode()
    assert "spike_height: 4" in page
    initial = superuser_client.get(change).context["adminform"].form.initial
    r = superuser_client.post(change, form_data(threshold_count="", window="", kind_options=initial["kind_options"],
                                                severity="warning"))
    assert r.status_code == 302
    rule.refresh_from_db()
    assert (rule.kind, rule.severity, rule.spec["timeframe"], rule.version) == ("spike", "warning", "10m", 2)


@pytest.mark.django_db
def test_admin_count_rule_still_needs_its_threshold(superuser_client):
    r = superuser_client.post(ADMIN_ADD, form_data(threshold_count=""))
    assert r.status_code == 200 and "required for a count rule" in r.context["adminform"].form.errors["threshold_count"][0]


def test_dry_run_reports_matches_but_never_a_firing_for_history_based_kinds():
    from apps.rules.dryrun import dry_run

    rate = {"id": "rate", "kind": "log_anomaly", "name": "Rate", "category": "error", "match": {"levels": ["ERROR"]},
            "severity": "warning"}
    specs = [validate_rule(spike_rule()), validate_rule(rate)]
    out = dry_run(specs, burst(50, start=T0))
    assert [(g.rule, g.matches, g.would_fire, g.window_seconds) for g in out.groups] == [
        ("err-spike", 50, False, 60), ("rate", 50, False, 300)]
