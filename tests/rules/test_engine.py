from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction

from apps.alerts.models import Alert, AlertState
from apps.alerts.services import alert_resolve
from apps.core.fastpath import COPY_MIN_ROWS
from apps.rules import engine, services
from apps.rules.engine import detect
from apps.rules.models import LogRule, RulesetVersion, WindowState
from apps.tenants.models import Plugin, Tenant

from .conftest import T0, burst, ev, rule_dict


pytestmark = pytest.mark.django_db


def make(**kw):
    return services.rule_create(raw=rule_dict(**kw), actor="test")


def test_threshold_crossing_fires_once_then_absorbs(tenant):
    make(count=5)
    r1 = detect(burst(3), received_at=T0 + timedelta(seconds=3))
    assert r1.alerts_fired == 0 and Alert.objects.count() == 0
    assert r1.matched == {0: ["errors"], 1: ["errors"], 2: ["errors"]}

    r2 = detect(burst(3, start=T0 + timedelta(seconds=10)), received_at=T0 + timedelta(seconds=13))
    assert r2.alerts_fired == 1
    alert = Alert.objects.get()
    assert alert.count == 6 and alert.rule_key == "errors" and alert.rule_version == 1
    assert alert.title == "Errors: acme/checkout"
    assert alert.summary == "6 ERROR/FATAL events in 5m from checkout"
    assert alert.recommended_action == "Roll back."
    assert alert.plugin == Plugin.objects.get(tenant=tenant, slug="checkout")
    assert alert.first_seen == T0

    # Below the threshold again, but the open alert absorbs every new occurrence.
    r3 = detect(burst(1, start=T0 + timedelta(seconds=20)), received_at=T0 + timedelta(seconds=21))
    assert (r3.alerts_fired, r3.alerts_absorbed) == (0, 1)
    alert.refresh_from_db()
    assert alert.count == 7 and Alert.objects.count() == 1


def test_a_window_whose_alert_is_gone_fires_afresh(tenant):
    """The window keeps its alert's id without a foreign key: an id whose alert was deleted (raw SQL,
    as a tenant cascade or an operator at the database would) is treated as no alert."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, WindowState._meta.db_table)
    assert not [name for name, c in constraints.items() if c["columns"] == ["alert_id"]]  # no key, no index
    make(count=1, cooldown="0s")
    detect(burst(1), received_at=T0)
    gone = Alert.objects.get()
    assert WindowState.objects.get().alert_id == gone.pk
    with connection.cursor() as cursor:
        cursor.execute('DELETE FROM "alerts_timelineentry" WHERE "alert_id" = %s', [gone.pk])
        cursor.execute('DELETE FROM "delivery_delivery" WHERE "alert_id" = %s', [gone.pk])
        cursor.execute('DELETE FROM "alerts_alert" WHERE "id" = %s', [gone.pk])
    assert WindowState.objects.get().alert_id == gone.pk  # nothing rewrote it
    r = detect(burst(1, start=T0 + timedelta(seconds=5)), received_at=T0 + timedelta(seconds=6))
    assert (r.alerts_fired, r.alerts_absorbed) == (1, 0)
    fresh = Alert.objects.get()
    assert fresh.pk != gone.pk and WindowState.objects.get().alert_id == fresh.pk


def test_one_batch_crossing_many_times_fires_one_alert(tenant):
    make(count=2)
    events = [ev(f"boom {i}", ts=T0 + timedelta(seconds=i / 10), trace_id="t1") for i in range(50)]
    r = detect(events, received_at=T0 + timedelta(seconds=6))
    assert r.alerts_fired == 1
    alert = Alert.objects.get()
    assert alert.count == 50 and alert.trace_ids == ["t1"] and alert.samples[:2] == ["ERROR boom 0", "ERROR boom 1"]
    assert len(alert.samples) == 10


def test_cooldown_blocks_refiring_until_over(tenant, settings):
    settings.ALERT_REOPEN_WINDOW_SECONDS = 0  # a re-fire creates a new alert, easy to count
    make(count=2, window="1m", cooldown="10m")
    detect(burst(2), received_at=T0 + timedelta(seconds=2))
    first = Alert.objects.get()
    alert_resolve(alert_id=first.pk, actor=None)

    t = T0 + timedelta(minutes=5)
    r = detect(burst(5, start=t), received_at=t + timedelta(seconds=5))
    assert r.alerts_fired == 0 and Alert.objects.count() == 1  # inside the 10m cooldown

    t = T0 + timedelta(minutes=10, seconds=2)
    r = detect(burst(2, start=t), received_at=t + timedelta(seconds=1))
    assert r.alerts_fired == 1 and Alert.objects.count() == 2
    assert Alert.objects.exclude(pk=first.pk).get().state == AlertState.OPEN


def test_resolved_alert_refires_as_reopen(tenant):
    make(count=1, cooldown="0s")
    detect(burst(1), received_at=T0)
    alert = Alert.objects.get()
    alert_resolve(alert_id=alert.pk, actor=None)
    r = detect(burst(1, start=T0 + timedelta(seconds=5)), received_at=T0 + timedelta(seconds=5))
    assert r.alerts_fired == 1
    alert.refresh_from_db()
    assert alert.state == AlertState.OPEN and alert.reopened_count == 1 and Alert.objects.count() == 1


def test_per_tenant_override_thresholds(tenant, other_tenant):
    make(count=10)
    services.override_set(key="errors", tenant=tenant, body={"threshold": {"count": 2}}, actor="test")
    r = detect(burst(3, tenant="acme") + burst(3, tenant="globex"), received_at=T0 + timedelta(seconds=3))
    assert r.alerts_fired == 1
    assert Alert.objects.get().tenant == tenant


def test_pack_override_and_disabled_for_tenant(tenant, other_tenant):
    make(count=10, overrides=[{"tenant": "acme", "threshold": {"count": 2}}, {"tenant": "globex", "enabled": False}])
    r = detect(burst(3, tenant="acme") + burst(3, tenant="globex"), received_at=T0 + timedelta(seconds=3))
    assert r.alerts_fired == 1 and sorted(r.matched) == [0, 1, 2]


def test_rule_change_is_seen_by_next_batch(tenant):
    make(count=100)
    detect(burst(3), received_at=T0 + timedelta(seconds=3))
    services.rule_patch(key="errors", changes={"threshold": {"count": 4, "window": "5m"}}, actor="test")
    r = detect(burst(1, start=T0 + timedelta(seconds=4)), received_at=T0 + timedelta(seconds=4))
    assert r.alerts_fired == 1 and Alert.objects.get().rule_version == 2


def test_late_events_are_dropped_and_reported(tenant):
    make(count=2, window="1m")
    now = T0 + timedelta(minutes=10)
    r = detect(burst(5, start=T0) + burst(1, start=now), received_at=now)
    assert r.late_dropped == 5 and r.alerts_fired == 0
    assert len(r.matched) == 6  # still reported: ingest keeps them as evidence
    ws = WindowState.objects.get()
    assert sum(ws.state["buckets"].values()) == 1


def test_groups_by_field_and_unknown_tenant(tenant):
    make(rid="brute", count=3, levels=(), keywords=["login failed"], group_by=["tenant_id", "plugin_id",
                                                                                 "fields.source_ip"])
    events = ([ev("login failed", "WARNING", source_ip="10.0.0.1") for _ in range(3)]
              + [ev("login failed", "WARNING", source_ip="10.0.0.2") for _ in range(2)]
              + [ev("login failed", "WARNING", tenant="nobody")])
    r = detect(events, received_at=T0)
    assert r.alerts_fired == 1 and r.unknown_tenant_events == 1 and r.groups == 2
    alert = Alert.objects.get()
    assert alert.group_key == {"tenant_id": "acme", "plugin_id": "checkout", "fields.source_ip": "10.0.0.1"}
    assert alert.summary == "3 matching events in 5m from checkout (fields.source_ip=10.0.0.1)"


def test_no_rules_no_matches(tenant):
    r = detect(burst(3), received_at=T0)
    assert r.matched == {} and r.alerts_fired == 0 and WindowState.objects.count() == 0


def test_redos_pattern_is_linear(tenant):
    make(rid="redos", count=1, levels=(), patterns=["(a+)+b"])
    line = "a" * 8000 + "c"
    start = time.perf_counter()
    r = detect([ev(line, "INFO")] * 20, received_at=T0)
    assert time.perf_counter() - start < 1.0
    assert r.matched == {} and r.alerts_fired == 0


def test_thousand_rules_per_tenant_compile_and_match(tenant):
    specs = [rule_dict(f"kw-{i}", count=1, levels=(), keywords=[f"needle{i:04d}x"]) for i in range(990)]
    specs += [rule_dict(f"re-{i}", count=1, levels=(), patterns=[fr"code=E{i:03d}\d+"]) for i in range(10)]
    services.pack_import(doc={"rules": specs}, actor="test")
    r = detect([ev("x needle0500x y", "INFO"), ev("code=E007123", "INFO"), ev("nothing", "INFO")], received_at=T0)
    assert r.matched == {0: ["kw-500"], 1: ["re-7"]}
    assert r.alerts_fired == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_on_one_group_count_exactly_once():
    Tenant.objects.create(slug="acme", name="Acme")
    make(count=20)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker(offset: int):
        try:
            events = burst(15, start=T0 + timedelta(seconds=offset))
            with transaction.atomic():
                barrier.wait(timeout=10)
                detect(events, received_at=T0 + timedelta(seconds=60))
                time.sleep(0.2)  # hold the row lock so the other worker really waits
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(o,)) for o in (0, 20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    ws = WindowState.objects.get()
    assert sum(ws.state["buckets"].values()) == 30
    alert = Alert.objects.get()
    assert alert.count == 30  # 15 did not fire, 15 more crossed 20: one alert with all 30


def test_cache_not_fooled_by_a_reused_version_number(tenant):
    # A restored database (or a rolled-back test) can show the same version number again.
    make(count=1)
    assert detect(burst(1), received_at=T0).matched == {0: ["errors"]}
    version = RulesetVersion.objects.get().version
    LogRule.objects.all().delete()
    services.rule_create(raw=rule_dict("other", levels=["INFO"]), actor="test")
    RulesetVersion.objects.filter(pk=1).update(version=version)
    assert detect(burst(1), received_at=T0).matched == {}


def _plugins_burst(n_plugins: int, per_plugin: int, start, **kw):
    return [e for p in range(n_plugins) for e in burst(per_plugin, start=start, plugin=f"p{p:02d}", **kw)]


def test_active_alerts_absorb_in_bulk_with_constant_queries_and_no_events(tenant, monkeypatch):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from apps.delivery import outbox

    make(count=2, cooldown="10m")
    r = detect(_plugins_burst(30, 2, T0), received_at=T0 + timedelta(seconds=2))
    assert r.alerts_fired == 30 and Alert.objects.count() == 30
    sent = []
    monkeypatch.setattr(outbox, "notify", lambda notifications, **kw: sent.extend(n.event_type for n in notifications))
    try:
        t = T0 + timedelta(seconds=10)
        few_n = COPY_MIN_ROWS  # as many groups as the many below write their timeline lines the same way
        with CaptureQueriesContext(connection) as few:
            r3 = detect(_plugins_burst(few_n, 1, t, trace_id="tr-a"), received_at=t + timedelta(seconds=1))
        t = T0 + timedelta(seconds=20)
        with CaptureQueriesContext(connection) as many:
            r30 = detect(_plugins_burst(30, 3, t, trace_id="tr-b"), received_at=t + timedelta(seconds=3))
    finally:
        monkeypatch.undo()
    assert (r3.alerts_fired, r3.alerts_absorbed) == (0, few_n)
    assert (r30.alerts_fired, r30.alerts_absorbed, len(set(r30.alert_ids))) == (0, 30, 30)
    assert len(many) == len(few)  # absorbing 30 groups costs what absorbing 4 does
    assert sent == []  # absorbing notifies nobody
    counts = dict(Alert.objects.values_list("plugin__slug", "count"))
    assert counts == {f"p{p:02d}": 2 + (1 if p < few_n else 0) + 3 for p in range(30)}
    a0 = Alert.objects.get(plugin__slug="p00")
    assert a0.trace_ids == ["tr-a", "tr-b"] and a0.samples == ["ERROR boom"]  # distinct lines only
    assert a0.last_seen == T0 + timedelta(seconds=22)
    lines = list(a0.timeline.filter(kind="occurrence"))
    assert [(e.data["occurrences"], e.data["batches"], e.data["count"]) for e in lines] == [(4, 2, 6)]


def test_absorb_moves_auto_resolve_like_fire_alert(tenant):
    make(count=1, cooldown="10m", auto_resolve="15m")
    detect(burst(1), received_at=T0)
    t = T0 + timedelta(minutes=3)
    r = detect(burst(2, start=t), received_at=t + timedelta(seconds=2))
    assert r.alerts_absorbed == 1
    alert = Alert.objects.get()
    assert alert.count == 3 and alert.auto_resolve_at == t + timedelta(seconds=1, minutes=15)


@pytest.mark.parametrize("cooldown, refires", [("0s", True), ("1h", False)])
@pytest.mark.django_db(transaction=True)
def test_alert_resolved_during_the_batch_is_not_fed_and_the_group_is_judged_afresh(cooldown, refires):
    from apps.alerts.models import TimelineEntry

    Tenant.objects.create(slug="acme", name="Acme")
    make(count=1, cooldown=cooldown)
    detect(burst(1), received_at=T0)
    alert = Alert.objects.get()
    resolved = threading.Event()
    box: dict = {}

    def operator():
        try:
            with transaction.atomic():
                alert_resolve(alert_id=alert.pk, actor=None)
                resolved.set()
                time.sleep(0.4)  # the worker has read the window row and now waits on the alert row
        finally:
            connection.close()

    def worker():
        try:
            resolved.wait(5)
            with transaction.atomic():
                box["result"] = detect(burst(2, start=T0 + timedelta(seconds=5)),
                                       received_at=T0 + timedelta(seconds=7))
        except Exception as exc:  # reported below
            box["error"] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=operator), threading.Thread(target=worker)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert "error" not in box, box
    r = box["result"]
    assert r.alerts_absorbed == 0
    alert.refresh_from_db()
    assert not TimelineEntry.objects.filter(alert=alert, kind="occurrence").exists()
    assert sum(WindowState.objects.get().state["buckets"].values()) == 3  # counted all the same
    if refires:  # threshold crossed, no cooldown: fires again, which reopens the resolved alert
        assert r.alerts_fired == 1 and alert.state == AlertState.OPEN and alert.reopened_count == 1
    else:
        assert r.alerts_fired == 0 and alert.state == AlertState.RESOLVED and alert.count == 1


def test_alert_plugin_is_the_groups_plugin_registered_in_bulk_or_none_when_mixed(tenant):
    make(rid="per-tenant", count=2, group_by=["tenant_id"])
    make(rid="per-plugin", count=2, group_by=["tenant_id", "plugin_id"])
    events = burst(2, plugin="brand-new") + burst(2, tenant="globex", plugin="a") + burst(1, tenant="globex", plugin="b")
    Tenant.objects.create(slug="globex", name="Globex")
    r = detect(events, received_at=T0 + timedelta(seconds=3))
    assert r.alerts_fired == 4
    plugins = {(a.rule_key, a.tenant.slug): a.plugin and a.plugin.slug for a in Alert.objects.select_related("tenant", "plugin")}
    assert plugins == {("per-tenant", "acme"): "brand-new", ("per-tenant", "globex"): None,
                       ("per-plugin", "acme"): "brand-new", ("per-plugin", "globex"): "a"}
    assert Plugin.objects.filter(slug="brand-new").count() == 1


@pytest.mark.both_databases
def test_fire_absorb_and_cooldown_end_to_end_on_either_database(tenant):
    # Re-run on a real SQLite file by tests/test_fastpaths_on_sqlite.py (the embedded default).
    make(count=2, cooldown="10m")
    r1 = detect(burst(3, trace_id="a"), received_at=T0 + timedelta(seconds=3))
    r2 = detect(burst(2, start=T0 + timedelta(seconds=10), trace_id="b"), received_at=T0 + timedelta(seconds=12))
    assert (r1.alerts_fired, r2.alerts_fired, r2.alerts_absorbed) == (1, 0, 1)
    alert = Alert.objects.get()
    assert (alert.count, alert.trace_ids, alert.last_seen) == (5, ["a", "b"], T0 + timedelta(seconds=11))
    assert alert.timeline.get(kind="occurrence").data == {"occurrences": 2, "batches": 1, "count": 5}
    assert sum(WindowState.objects.get().state["buckets"].values()) == 5
    alert_resolve(alert_id=alert.pk, actor=None)
    r3 = detect(burst(1, start=T0 + timedelta(seconds=20)), received_at=T0 + timedelta(seconds=21))
    assert (r3.alerts_fired, r3.alerts_absorbed) == (0, 0)  # resolved: not fed, and in cooldown
    assert Alert.objects.get().count == 5


def test_a_batch_reads_no_tenant_row_and_a_tenant_switched_off_stops_counting(tenant, monkeypatch):
    from django.test.utils import CaptureQueriesContext

    from apps.tenants import active

    monkeypatch.setattr(active, "_monotonic", lambda: 1000.0)  # the cache's TTL does not run out mid-test
    make(count=100)
    detect(burst(1), received_at=T0 + timedelta(seconds=1))  # warms the process caches
    with CaptureQueriesContext(connection) as queries:
        r = detect(burst(2, start=T0 + timedelta(seconds=2)), received_at=T0 + timedelta(seconds=4))
    assert r.groups == 1 and r.unknown_tenant_events == 0
    assert not [q["sql"] for q in queries if "tenants_tenant" in q["sql"]]
    tenant.active = False
    tenant.save()  # in this process: seen by the next batch (others: within apps.tenants.active.TTL)
    r = detect(burst(2, start=T0 + timedelta(seconds=5)), received_at=T0 + timedelta(seconds=7))
    assert r.groups == 0 and r.unknown_tenant_events == 2
    assert sum(WindowState.objects.get().state["buckets"].values()) == 3  # the first two batches only
