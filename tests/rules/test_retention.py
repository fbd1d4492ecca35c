"""The rules' state is purged (apps.rules.retention, run by purge_expired), none of it while it can
still matter. Idle window rows: a group keyed by source IP leaves a row per address, which nothing
else ever removed; what a row holds is never lost (a count inside a window, an active alert the next
match feeds, a cooldown not over). Metric rollups past METRICS_RETENTION_DAYS, never inside the
rules' reach, and then the series left without any, which free their places under the series limit."""
from __future__ import annotations

import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, transaction

from apps.alerts.models import Alert
from apps.alerts.services import alert_resolve
from apps.core import clock
from apps.rules import fastpath, services
from apps.rules.engine import detect
from apps.rules.fastpath import WindowKey, lock_windows
from apps.rules.metrics import series_hash
from apps.rules.models import MetricRollup, MetricSeries, WindowState
from apps.rules.retention import RULES_REACH, idle, metrics_cutoff

from tests.ops.factories import make_alert
from tests.support.locks import held_elsewhere

from .conftest import burst, rule_dict

pytestmark = [pytest.mark.django_db, pytest.mark.both_databases]

HOUR = timedelta(hours=1)


def window(tenant, name: str, *, age: timedelta, **fields) -> WindowState:
    return WindowState.objects.create(
        rule_key=fields.pop("rule_key", "errors"), tenant=tenant, group_hash=f"hash-{name}",
        group_key={"fields.source_ip": name}, state={"bucket_s": 5, "buckets": {"100": 2}, "newest": 100},
        updated_at=clock.now() - age, **fields)


def purge() -> str:
    out = StringIO()
    call_command("purge_expired", stdout=out)
    return out.getvalue()


def remaining() -> set[str]:
    return set(WindowState.objects.values_list("group_hash", flat=True))


def test_idle_rows_go_and_rows_that_still_hold_something_stay(tenant):
    services.rule_create(raw=rule_dict(count=3, window="24h", cooldown="1h"), actor="test")
    now = clock.now()
    alert = make_alert(tenant, rule_key="errors")
    closed = make_alert(tenant, rule_key="errors")
    alert_resolve(alert_id=closed.pk, actor=None)
    window(tenant, "idle", age=27 * HOUR)
    window(tenant, "idle-fired-long-ago", age=27 * HOUR, last_fired_at=now - 28 * HOUR)
    window(tenant, "idle-resolved-alert", age=27 * HOUR, alert_id=closed.pk)
    window(tenant, "idle-alert-gone", age=27 * HOUR, alert_id=closed.pk + 1000)
    window(tenant, "idle-rule-gone", age=27 * HOUR, rule_key="deleted-rule")
    window(tenant, "counted-within-a-day", age=23 * HOUR)  # its counts may be in a 24 h window
    window(tenant, "open-alert", age=27 * HOUR, alert_id=alert.pk)  # the next match feeds it
    out = purge()
    assert "rules_windowstate: deleted 5" in out
    assert remaining() == {"hash-counted-within-a-day", "hash-open-alert"}


def test_a_cooldown_longer_than_the_windows_keeps_the_row_until_it_is_over(tenant):
    services.rule_create(raw=rule_dict(count=3, window="5m", cooldown="3d"), actor="test")
    now = clock.now()
    window(tenant, "in-cooldown", age=30 * HOUR, last_fired_at=now - 2 * 24 * HOUR)
    window(tenant, "cooled", age=30 * HOUR, last_fired_at=now - 4 * 24 * HOUR)
    window(tenant, "never-fired", age=30 * HOUR)
    purge()
    assert remaining() == {"hash-in-cooldown"}


def test_no_rule_keeps_counts_longer_than_the_purge_waits(tenant):
    """The purge waits MAX_WINDOW_S (24 h) plus the clock skew allowed ahead plus an hour: the rule
    schema lets no window row span more (a log window or an override at most 24 h, a spike rule's
    two timeframes at most 2 x 12 h)."""
    from apps.rules.spec import MAX_WINDOW_S, RulePackError, parse_rule

    now = clock.now()
    assert now - idle(now)[0] == timedelta(seconds=MAX_WINDOW_S + 300) + HOUR == 25 * HOUR + timedelta(seconds=300)
    spike = {**rule_dict("spiky"), "kind": "spike", "timeframe": "12h", "spike_height": 3, "spike_type": "up"}
    spike.pop("threshold")
    assert parse_rule(spike).threshold.window_s == MAX_WINDOW_S  # its row spans both timeframes
    too_long = [{**spike, "timeframe": "13h"}, rule_dict(window="25h"),
                rule_dict(overrides=[{"tenant": "acme", "threshold": {"window": "25h"}}])]
    for raw in too_long:
        with pytest.raises(RulePackError, match="out of range"):
            parse_rule(raw)
    services.rule_create(raw=spike, actor="test")
    window(tenant, "inside-two-timeframes", age=25 * HOUR, rule_key="spiky")
    window(tenant, "past-two-timeframes", age=26 * HOUR, rule_key="spiky")
    assert {w.group_hash for w in idle(now)[1]} == {"hash-past-two-timeframes"}


def test_a_group_whose_row_was_purged_counts_afresh(tenant, monkeypatch):
    services.rule_create(raw=rule_dict(count=3, window="24h", cooldown="0s"), actor="test")
    t = clock.now()
    detect(burst(2, start=t - timedelta(seconds=30)), received_at=t)
    purge()
    assert WindowState.objects.count() == 1  # its two matches are in the 24 h window: kept
    later = t + 26 * HOUR  # the business clock moves on: both matches have left the window
    monkeypatch.setattr(clock, "now", lambda: later)
    purge()
    assert not WindowState.objects.exists()
    r = detect(burst(2, start=later), received_at=later + timedelta(seconds=2))
    assert r.alerts_fired == 0 and WindowState.objects.count() == 1
    r = detect(burst(1, start=later + timedelta(seconds=3)), received_at=later + timedelta(seconds=4))
    assert r.alerts_fired == 1 and Alert.objects.get().count == 3


def test_a_backlog_waiting_for_detection_keeps_the_windows_it_will_be_counted_in(tenant, monkeypatch):
    from apps.ingest.models import IngestBatch

    from tests.ops.factories import make_batch

    window(tenant, "counted-a-day-before-the-backlog", age=30 * HOUR)
    make_batch(tenant, accepted=1, status="PENDING", age=27 * HOUR)  # detection fell a day behind
    purge()
    assert remaining() == {"hash-counted-a-day-before-the-backlog"}
    IngestBatch.objects.all().delete()  # caught up
    purge()
    assert remaining() == set()


def test_a_cooldown_a_pack_override_gives_one_tenant_keeps_its_rows(tenant):
    raw = rule_dict(count=3, window="5m", cooldown="10m", overrides=[{"tenant": "acme", "cooldown": "3d"}])
    services.rule_create(raw=raw, actor="test")
    now = clock.now()
    window(tenant, "in-the-tenants-cooldown", age=30 * HOUR, last_fired_at=now - 2 * 24 * HOUR)
    purge()
    assert remaining() == {"hash-in-the-tenants-cooldown"}


@pytest.mark.django_db(transaction=True)
def test_a_row_purged_between_the_engines_insert_and_its_lock_is_created_again(tenant, monkeypatch):
    """The engine's insert skips a row that exists without locking it; the purge may delete that row
    before the lock. The engine creates it again rather than fail the batch."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite's detect transaction holds the write lock from its start: no purge in between")
    window(tenant, "resumed", age=30 * HOUR)
    real, passes = fastpath._insert_missing, []

    def insert_then_purged(cursor, keys, now):
        real(cursor, keys, now)  # finds the idle row there: inserts nothing, locks nothing
        passes.append([k.group_hash for k in keys])
        if len(passes) == 1:
            purger = threading.Thread(target=lambda: (purge(), connection.close()))
            purger.start()
            purger.join(20)

    monkeypatch.setattr(fastpath, "_insert_missing", insert_then_purged)
    key = WindowKey(rule_key="errors", tenant_id=tenant.pk, group_hash="hash-resumed",
                    group_key={"fields.source_ip": "resumed"})
    with transaction.atomic():
        rows = lock_windows([key], clock.now())
        fresh = WindowState.objects.get(group_hash="hash-resumed")
    assert passes == [["hash-resumed"], ["hash-resumed"]]  # purged in between, so inserted again
    assert list(rows) == [("errors", tenant.pk, "hash-resumed")]
    assert rows[("errors", tenant.pk, "hash-resumed")].pk == fresh.pk and fresh.state == {}


DAY = timedelta(days=1)


def series(tenant, name: str, *, age: timedelta, rollups: list[timedelta] = ()) -> MetricSeries:
    now = clock.now()
    s = MetricSeries.objects.create(tenant=tenant, name="up", labels_hash=series_hash("up", (("pod", name),)),
                                    labels={"pod": name}, created_at=now - age)
    for ago in rollups:
        minute = (now - ago).replace(second=0, microsecond=0)
        MetricRollup.objects.create(series=s, minute=minute, count=1, sum=1, min=1, max=1, sumsq=1, last=1,
                                    last_ts=minute)
    return s


def test_old_rollups_go_and_then_the_series_left_without_any(tenant):
    now = clock.now()
    assert now - metrics_cutoff(now) == 9 * DAY  # METRICS_RETENTION_DAYS
    stopped = series(tenant, "stopped", age=30 * DAY, rollups=[20 * DAY, 10 * DAY])
    still_sending = series(tenant, "still-sending", age=30 * DAY, rollups=[10 * DAY, 8 * DAY, HOUR])
    new = series(tenant, "new", age=HOUR)  # no rollup yet: its first request is being written
    out = purge()
    assert "rules_metricrollup: deleted 3" in out and "rules_metricseries: deleted 1" in out
    assert set(MetricSeries.objects.values_list("pk", flat=True)) == {still_sending.pk, new.pk}
    assert sorted(ago.days for ago in (clock.now() - m for m in MetricRollup.objects.values_list("minute", flat=True))
                  ) == [0, 8]
    assert not MetricRollup.objects.filter(series_id=stopped.pk).exists()


def test_never_less_than_the_metric_rules_reach_back(tenant, settings):
    settings.METRICS_RETENTION_DAYS = 1
    assert RULES_REACH == 8 * DAY  # a seasonal baseline's 7 days; an absence's 7 days and its day of lookback
    now = clock.now()
    assert now - metrics_cutoff(now) == 8 * DAY + HOUR
    kept = series(tenant, "kept", age=30 * DAY, rollups=[8 * DAY - HOUR])
    purge()
    assert MetricRollup.objects.filter(series=kept).count() == 1


def test_a_stopped_series_frees_its_place_under_the_series_limit(tenant, settings, api, make_token):
    import orjson

    settings.METRICS_MAX_SERIES_PER_TENANT = 2
    series(tenant, "gone-a", age=30 * DAY, rollups=[20 * DAY])
    series(tenant, "gone-b", age=30 * DAY, rollups=[20 * DAY])
    writer = api(make_token(tenant, "metrics:write"))

    def post(pod: str):
        return writer.post("/api/v1/metrics", data=orjson.dumps([{"name": "up", "labels": {"pod": pod}, "value": 1}]),
                           content_type="application/json").json()

    assert post("fresh")["series_created"] == 0  # refused: two series that stopped hold both places
    purge()
    assert post("fresh") == {"accepted": 1, "rejected": [], "series_created": 1}


@pytest.mark.django_db(transaction=True)
def test_a_request_resuming_a_series_while_it_is_purged_is_redone_and_creates_it_anew(tenant, monkeypatch):
    """An intake request reads the id of a series that stopped long ago and writes its rollup; before
    it commits, the purge deletes the series (the rollup's foreign key is checked only at commit, so
    nothing held the row). The commit fails on the key and the request is redone from the database:
    the sample is stored, under the series created anew."""
    from apps.rules import metrics

    if connection.vendor != "postgresql":
        pytest.skip("SQLite writes one transaction at a time")
    stopped = series(tenant, "resumed", age=30 * DAY, rollups=[20 * DAY])
    written, release = threading.Event(), threading.Event()
    real, result = fastpath.upsert_rollups, {}

    def upsert_then_wait(rows):
        real(rows)
        if not written.is_set():  # the first try only
            written.set()
            release.wait(20)

    monkeypatch.setattr(fastpath, "upsert_rollups", upsert_then_wait)
    sample = metrics.parse_samples(b'[{"name": "up", "labels": {"pod": "resumed"}, "value": 2}]',
                                   "application/json", now=clock.now().timestamp())[0]
    assert metrics.SERIES_IDS.get_many(tenant.pk, [stopped.labels_hash]) == {}  # read from the database
    def writer():
        try:
            result["stored"] = metrics.store_samples(tenant_id=tenant.pk, samples=sample, now=clock.now())
        except Exception as exc:  # reported below
            result["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert written.wait(20)
        out = purge()
    finally:
        release.set()
        thread.join(20)
    assert "rules_metricseries: deleted 1" in out and "error" not in result, result
    assert (result["stored"].accepted, result["stored"].series_created) == (1, 1)
    fresh = MetricSeries.objects.get()
    assert fresh.pk != stopped.pk and fresh.labels == {"pod": "resumed"}
    assert list(MetricRollup.objects.filter(series=fresh).values_list("sum", flat=True)) == [2.0]


@pytest.mark.django_db(transaction=True)  # the foreign key is checked when the request commits
def test_a_purged_series_whose_id_the_intake_still_caches_is_created_anew(tenant, api, make_token):
    import orjson

    writer = api(make_token(tenant, "metrics:write"))

    def post():
        return writer.post("/api/v1/metrics", data=orjson.dumps([{"name": "up", "labels": {"pod": "p"}, "value": 1}]),
                           content_type="application/json").json()

    assert post()["series_created"] == 1  # its id is in this process's cache now
    old = MetricSeries.objects.get()
    from apps.rules.metrics import SERIES_IDS

    assert SERIES_IDS.get_many(tenant.pk, [old.labels_hash]) == {old.labels_hash: old.pk}
    MetricSeries.objects.filter(pk=old.pk).update(created_at=clock.now() - 30 * DAY)
    MetricRollup.objects.filter(series=old).update(minute=clock.now() - 20 * DAY)
    purge()
    assert not MetricSeries.objects.exists()
    assert post() == {"accepted": 1, "rejected": [], "series_created": 1}
    fresh = MetricSeries.objects.get()
    assert fresh.pk != old.pk and MetricRollup.objects.filter(series=fresh).count() == 1


@pytest.mark.django_db(transaction=True)
def test_an_idle_row_a_detect_batch_holds_is_left_for_the_next_purge(tenant):
    """The engine locks its rows in (rule, tenant, group) order; the purge must not wait for one (it
    could hold another the engine waits for): it skips the rows held, and the next purge takes them."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite writes one transaction at a time")
    held_row = window(tenant, "held", age=30 * HOUR)
    window(tenant, "free", age=30 * HOUR)
    with held_elsewhere(lambda: WindowState.objects.select_for_update().get(pk=held_row.pk)):  # a detect batch
        out = purge()
    assert "rules_windowstate: deleted 1" in out and remaining() == {"hash-held"}
    purge()
    assert remaining() == set()
