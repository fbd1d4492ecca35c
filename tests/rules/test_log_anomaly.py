"""Log-rate anomaly rules: per (tenant, plugin) "dynamic thresholds". A steadily noisy plugin stays
quiet, a quiet one that jumps alerts; counts are exactly-once per-minute rows; the alert resolves
when the rate is back inside its baseline."""
from __future__ import annotations

from datetime import timedelta

import pytest

from apps.alerts.models import ACTIVE_STATES, Alert, AlertState
from apps.core import clock
from apps.ingest import tenancy
from apps.ingest.codec import encode_events
from apps.ingest.models import BatchStatus, IngestBatch
from apps.ingest.processing import process_batch
from apps.rules import metric_eval
from apps.rules.engine import detect
from apps.rules.models import LogRate, LogRateGroup, WindowState
from apps.rules.services import RuleInvalid, rule_create, validate_rule
from apps.rules.spec import dump_pack, load_pack
from tests.alerts.conftest import Clock

from .conftest import T0, burst

NOISY = [100 + (m * 7) % 21 - 10 for m in range(200)]  # 90..110 errors a minute
QUIET = [(1, 0, 2, 1)[m % 4] for m in range(200)]       # about one a minute


def anomaly_rule(rid: str = "error-rate", **extra) -> dict:
    raw = {"id": rid, "kind": "log_anomaly", "name": "Error rate unusual", "category": "error",
           "match": {"levels": ["ERROR"]}, "window": "5m", "baseline": "previous", "threshold": 3,
           "min_samples": 30, "floor": 5, "direction": "up", "severity": "warning",
           "recommended_action": "Look at what changed in the plugin."}
    raw.update(extra)
    return raw


@pytest.fixture
def frozen(monkeypatch) -> Clock:
    fake = Clock(T0)
    monkeypatch.setattr(clock, "now", fake)
    return fake


def minute(frozen: Clock, m: int, **per_plugin: int) -> None:
    """The events of minute ``m`` (T0 + m minutes) per plugin, in one batch received at its end."""
    start = T0 + timedelta(minutes=m)
    events = [e for plugin, n in per_plugin.items() for e in burst(n, start=start, step=0.5, plugin=plugin)]
    frozen.current = start + timedelta(seconds=59)
    if events:
        detect(events, received_at=frozen.current)


def evaluate(frozen: Clock, m: int) -> int:
    frozen.current = T0 + timedelta(minutes=m, seconds=1)
    return metric_eval.evaluate_due()


def active():
    return Alert.objects.filter(state__in=ACTIVE_STATES)


@pytest.mark.django_db
def test_a_quiet_plugin_that_jumps_alerts_and_a_steadily_noisy_one_does_not(frozen, tenant):
    rule_create(raw=anomaly_rule(), actor="test")
    for m in range(70):
        minute(frozen, m, noisy=NOISY[m], quiet=QUIET[m])
    assert evaluate(frozen, 70) == 1
    assert not active().exists()  # 100 a minute is normal for "noisy": no alert however high

    for m in range(70, 75):
        minute(frozen, m, noisy=NOISY[m], quiet=30)
    evaluate(frozen, 75)
    alert = active().get()
    assert alert.plugin.slug == "quiet" and alert.rule_key == "error-rate" and alert.source == "log_rule"
    assert alert.value == 30 and alert.threshold == 3
    assert alert.baseline["mean"] == pytest.approx(1.0) and alert.baseline["z"] > 3
    assert alert.title == "Error rate unusual: acme/quiet"
    assert alert.summary.startswith("30 matching events/min over the last 5m from quiet, z +")

    # Back to its usual rate: resolved by the next evaluation, with the reason on the timeline.
    for m in range(75, 80):
        minute(frozen, m, noisy=NOISY[m], quiet=QUIET[m])
    evaluate(frozen, 80)
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED and alert.resolved_by == "log-anomaly-rule"
    assert not active().exists()
    assert not WindowState.objects.exists()  # counted per minute, not in sliding windows


@pytest.mark.django_db
def test_floor_and_min_samples_hold_back_low_volume_and_new_plugins(frozen, tenant):
    rule_create(raw=anomaly_rule(floor=10), actor="test")
    for m in range(70):
        minute(frozen, m, quiet=QUIET[m], **({"fresh": 1} if m >= 60 else {}))
    for m in range(70, 75):
        minute(frozen, m, quiet=8, fresh=50)
    evaluate(frozen, 75)
    # quiet: 8/min is far above its mean but under the floor; fresh: 50/min, but only 10 baseline
    # minutes known (it started at minute 60), fewer than min_samples: no verdict.
    assert not active().exists()
    assert LogRateGroup.objects.get(plugin="fresh").first_minute == T0 + timedelta(minutes=60)


@pytest.mark.django_db
def test_direction_down_sees_a_plugin_fall_silent(frozen, tenant):
    rule_create(raw=anomaly_rule(direction="down", floor=None), actor="test")
    for m in range(70):
        minute(frozen, m, noisy=NOISY[m])
    for m in range(70, 75):
        frozen.current = T0 + timedelta(minutes=m, seconds=59)  # no events at all
    evaluate(frozen, 75)
    alert = active().get()
    assert alert.plugin.slug == "noisy" and alert.value == 0 and alert.baseline["z"] < -3


@pytest.mark.django_db
def test_the_same_batch_processed_twice_counts_once(frozen, tenant):
    rule_create(raw=anomaly_rule(), actor="test")
    events = burst(7, start=T0 + timedelta(seconds=50), step=2.0)  # 5 in minute 0, 2 in minute 1
    batch = IngestBatch.objects.create(tenant=tenant, received_at=T0 + timedelta(seconds=65), event_count=7,
                                       rejected_count=0, payload=encode_events(events), status=BatchStatus.PENDING)
    tenancy.clear_caches()  # the slug -> id map outlives each test's rolled-back tenant
    assert process_batch(batch_id=batch.pk).events == 7
    assert process_batch(batch_id=batch.pk) is None
    detect(burst(3, start=T0 + timedelta(seconds=70)), received_at=T0 + timedelta(seconds=75))
    assert list(LogRate.objects.order_by("minute").values_list("minute", "count")) == [
        (T0, 5), (T0 + timedelta(minutes=1), 5)]


@pytest.mark.parametrize("change, error", [
    ({"window": "90s"}, "rule 'error-rate': window: 1m30s is not whole minutes"),
    ({"window": "2h"}, "rule 'error-rate': window: 2h out of range"),
    ({"threshold": 0}, "rule 'error-rate': threshold: 0 out of range"),
    ({"floor": -1}, "rule 'error-rate': floor: must be >= 0"),
    ({"baseline": "yesterday"}, "rule 'error-rate': baseline: unknown 'yesterday'"),
    ({"min_samples": 1}, "rule 'error-rate': min_samples: must be an integer 2..100000"),
    ({"group_by": ["trace_id"]}, "rule 'error-rate': group_by: unknown key for kind 'log_anomaly'"),
    ({"for": "5m", "consecutive": 2}, "rule 'error-rate': for: give either for"),
    ({"match": {}}, "rule 'error-rate': match: empty"),
])
def test_validation_names_the_rule_and_the_field(change, error):
    with pytest.raises(RuleInvalid) as exc:
        validate_rule({**anomaly_rule(), **change})
    assert any(e.startswith(error) for e in exc.value.errors), exc.value.errors


def test_export_round_trips(db):
    spec = validate_rule(anomaly_rule(consecutive=2, overrides=[{"tenant": "acme", "enabled": False}]))
    assert load_pack(dump_pack([spec])) == [spec] == load_pack(dump_pack([spec], "json"))
    rule = rule_create(raw=anomaly_rule(), actor="test")
    assert (rule.kind, rule.window_seconds) == ("log_anomaly", 300)
