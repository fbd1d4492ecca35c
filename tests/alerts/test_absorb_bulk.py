"""alerts_absorb_bulk: the detection engine's one-statement absorb into active alerts."""
from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from apps.alerts import services
from apps.alerts.models import Alert, AlertState, TimelineEntry
from apps.alerts.services import Absorb, alerts_absorb_bulk
from apps.audit.models import AuditEvent
from apps.core.fastpath import COPY_MIN_ROWS

from .conftest import fire_kwargs


def feed(alert, *, n=1, first=None, last=None, traces=(), samples=(), auto_resolve=None) -> Absorb:
    last = last or alert.last_seen
    return Absorb(alert_id=alert.pk, occurrences=n, first_seen=first or last, last_seen=last,
                  trace_ids=list(traces), samples=list(samples), auto_resolve_seconds=auto_resolve)


@pytest.mark.django_db
class TestBulkAbsorb:
    def test_counts_seen_times_and_deadline_for_many_alerts_in_constant_queries(self, make_alert, frozen):
        alerts = [make_alert(count=5) for _ in range(30)]
        frozen.advance(seconds=30)
        later = frozen()
        items = [feed(a, n=i + 1, first=a.first_seen - timedelta(minutes=1), last=later, auto_resolve=600)
                 for i, a in enumerate(alerts)]
        few_n = COPY_MIN_ROWS  # both calls insert their timeline lines the same way (apps.core.fastpath)
        with CaptureQueriesContext(connection) as few:
            assert alerts_absorb_bulk(items[:few_n]) == {a.pk: 5 + i + 1 for i, a in enumerate(alerts[:few_n])}
        frozen.advance(seconds=90)  # past the coalescing window: new timeline lines for all 30
        items = [feed(a, n=i + 1, last=later) for i, a in enumerate(alerts)]
        with CaptureQueriesContext(connection) as many:
            counts = alerts_absorb_bulk(items)
        def statements(captured):  # the sequence's name is looked up once per process, whichever call is first
            return [q for q in captured.captured_queries if "pg_get_serial_sequence" not in q["sql"]]

        assert len(statements(many)) == len(statements(few))  # does not grow with the number of alerts
        for i, a in enumerate(alerts):
            a.refresh_from_db()
            expected = 5 + (i + 1) * (2 if i < few_n else 1)
            assert counts[a.pk] == a.count == expected
            assert a.last_seen == later
            assert a.updated_at == frozen()
        first3 = alerts[0]
        assert first3.first_seen == alerts[0].created_at - timedelta(minutes=1)
        # the second feed carried no auto-resolve: the deadline follows the latest call, as fire_alert does
        assert first3.auto_resolve_seconds is None and first3.auto_resolve_at is None

    def test_auto_resolve_deadline_moves_with_last_seen_and_never_back(self, make_alert, frozen):
        alert = make_alert()
        frozen.advance(minutes=5)
        alerts_absorb_bulk([feed(alert, last=frozen(), auto_resolve=600)])
        alert.refresh_from_db()
        assert (alert.last_seen, alert.auto_resolve_seconds) == (frozen(), 600)
        assert alert.auto_resolve_at == frozen() + timedelta(seconds=600)
        # an older batch (late events) leaves last_seen and the deadline where they are
        alerts_absorb_bulk([feed(alert, first=frozen() - timedelta(minutes=3), last=frozen() - timedelta(minutes=2),
                                 auto_resolve=600)])
        alert.refresh_from_db()
        assert alert.last_seen == frozen() and alert.auto_resolve_at == frozen() + timedelta(seconds=600)

    def test_trace_ids_and_samples_merge_distinct_up_to_their_caps(self, make_alert, frozen):
        alert = make_alert(trace_ids=["t1"], samples=["ERROR first"])
        alerts_absorb_bulk([feed(alert, traces=["t1", "t2", ""], samples=["ERROR first", "ERROR second"])])
        alert.refresh_from_db()
        assert alert.trace_ids == ["t1", "t2"] and alert.samples == ["ERROR first", "ERROR second"]
        for i in range(5):
            alerts_absorb_bulk([feed(alert, traces=[f"x{i}-{j}" for j in range(8)], samples=[f"line {i}-{j}" for j in range(4)])])
        alert.refresh_from_db()
        assert len(alert.trace_ids) == 20 and alert.trace_ids[:3] == ["t1", "t2", "x0-0"]
        assert alert.trace_ids[-1] == "x2-1"
        assert len(alert.samples) == 10 and alert.samples[:3] == ["ERROR first", "ERROR second", "line 0-0"]
        # full lists are left alone (and not even read back: the counter UPDATE is the only write)
        with CaptureQueriesContext(connection) as ctx:
            alerts_absorb_bulk([feed(alert, traces=["late"], samples=["late"])])
        assert not any('"trace_ids" = COALESCE' in q["sql"] for q in ctx.captured_queries)
        alert.refresh_from_db()
        assert len(alert.trace_ids) == 20 and "late" not in alert.trace_ids and "late" not in alert.samples

    def test_only_the_list_below_its_cap_changes(self, make_alert):
        alert = make_alert(trace_ids=[f"t{i}" for i in range(20)], samples=["a"])
        alerts_absorb_bulk([feed(alert, traces=["new"], samples=["b"])])
        alert.refresh_from_db()
        assert alert.trace_ids == [f"t{i}" for i in range(20)] and alert.samples == ["a", "b"]

    def test_an_alert_that_is_not_active_absorbs_nothing(self, make_alert):
        gone = make_alert(state=AlertState.RESOLVED, count=3)
        live = make_alert(count=3)
        assert alerts_absorb_bulk([feed(gone, n=4), feed(live, n=4), Absorb(
            alert_id=10**9, occurrences=1, first_seen=live.first_seen, last_seen=live.last_seen)]) == {live.pk: 7}
        gone.refresh_from_db()
        assert gone.count == 3 and gone.updated_at == gone.created_at
        assert not TimelineEntry.objects.filter(alert=gone).exists()

    @pytest.mark.parametrize("state", [AlertState.ACKNOWLEDGED, AlertState.ESCALATED, AlertState.SUPPRESSED])
    def test_every_active_state_absorbs(self, make_alert, state):
        alert = make_alert(state=state, count=1)
        assert alerts_absorb_bulk([feed(alert, n=2)]) == {alert.pk: 3}
        alert.refresh_from_db()
        assert alert.state == state

    def test_absorbing_sends_no_event_and_writes_no_audit_row(self, tenant, plugin, frozen, events):
        alert = services.fire_alert(**fire_kwargs(tenant, plugin)).alert
        events.clear()
        audits = AuditEvent.objects.count()
        alerts_absorb_bulk([feed(alert, n=5)])
        assert events == [] and AuditEvent.objects.count() == audits

    def test_two_items_for_one_alert_are_added_together(self, make_alert, frozen):
        alert = make_alert(count=1)
        later = frozen() + timedelta(seconds=9)
        assert alerts_absorb_bulk([feed(alert, n=2, traces=["a"]), feed(alert, n=3, last=later, traces=["b"])]) == {
            alert.pk: 6}
        alert.refresh_from_db()
        assert (alert.count, alert.last_seen, alert.trace_ids) == (6, later, ["a", "b"])
        line = TimelineEntry.objects.get(alert=alert, kind="occurrence")
        assert line.data == {"occurrences": 5, "batches": 1, "count": 6}

    def test_timeline_is_coalesced_about_once_a_minute(self, tenant, plugin, frozen):
        alert = services.fire_alert(**fire_kwargs(tenant, plugin)).alert  # count 25
        other = services.fire_alert(**fire_kwargs(tenant, plugin, group_key={"tenant_id": "acme", "x": "1"})).alert
        for i in range(30):
            frozen.advance(seconds=5)
            alerts_absorb_bulk([feed(alert, n=2, last=frozen()), feed(other, n=1, last=frozen())])
        lines = list(TimelineEntry.objects.filter(alert=alert, kind="occurrence").order_by("at", "id"))
        # 150 s of batches every 5 s -> one line per minute, not 30 lines
        assert len(lines) == 3
        # a line takes every batch up to 60 s after it was written (inclusive): 13 + 13 + 4
        assert [e.data["batches"] for e in lines] == [13, 13, 4]
        assert sum(e.data["occurrences"] for e in lines) == 60
        assert lines[-1].data["count"] == 85 and lines[-1].message == "+8 occurrences (total 85)"
        assert lines[0].message == "+26 occurrences (total 51)" and lines[0].actor_label == "system"
        assert sum(e.data["occurrences"] for e in TimelineEntry.objects.filter(alert=other, kind="occurrence")) == 30

    def test_shares_the_timeline_line_with_fire_alert_absorbs(self, tenant, plugin, frozen):
        alert = services.fire_alert(**fire_kwargs(tenant, plugin)).alert
        frozen.advance(seconds=5)
        assert services.fire_alert(**fire_kwargs(tenant, plugin, occurrences=2, last_seen=frozen())).absorbed
        frozen.advance(seconds=5)
        alerts_absorb_bulk([feed(alert, n=3, last=frozen())])
        frozen.advance(seconds=5)
        assert services.fire_alert(**fire_kwargs(tenant, plugin, occurrences=4, last_seen=frozen())).absorbed
        line = TimelineEntry.objects.get(alert=alert, kind="occurrence")
        assert line.data == {"occurrences": 9, "batches": 3, "count": 34}
        assert line.message == "+9 occurrences (total 34)"

    def test_empty_input_touches_nothing(self):
        with CaptureQueriesContext(connection) as ctx:
            assert alerts_absorb_bulk([]) == {}
        assert len(ctx) == 0


@pytest.mark.django_db(transaction=True)
def test_an_alert_resolved_while_we_wait_for_its_row_does_not_absorb(make_alert):
    alert = make_alert(count=3)
    resolved = threading.Event()
    box: dict = {}

    def operator():
        try:
            with transaction.atomic():
                services.alert_resolve(alert_id=alert.pk, actor=None)
                resolved.set()
                time.sleep(0.4)  # the detect worker now waits on our row lock
        finally:
            connection.close()

    def worker():
        try:
            resolved.wait(5)
            start = time.monotonic()
            with transaction.atomic():
                box["result"] = alerts_absorb_bulk([feed(alert, n=10)])
            box["waited"] = time.monotonic() - start
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
    assert box["waited"] > 0.2  # it really queued behind the resolve
    assert box["result"] == {}
    alert.refresh_from_db()
    assert (alert.state, alert.count) == (AlertState.RESOLVED, 3)
    assert not TimelineEntry.objects.filter(alert=alert, kind="occurrence").exists()


@pytest.mark.django_db(transaction=True)
def test_two_workers_absorbing_into_the_same_alerts_lose_nothing(make_alert):
    alerts = [make_alert(count=0) for _ in range(20)]
    barrier = threading.Barrier(2)
    errors: list = []

    def worker(order):
        try:
            barrier.wait(5)
            for _ in range(10):
                with transaction.atomic():
                    alerts_absorb_bulk([feed(a, n=1) for a in order])
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(o,)) for o in (alerts, alerts[::-1])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert set(Alert.objects.values_list("count", flat=True)) == {20}


@pytest.mark.both_databases
@pytest.mark.django_db
def test_absorb_merges_feeds_of_one_alert_and_skips_inactive_ones_on_either_database(make_alert, frozen):
    live = make_alert(count=1, trace_ids=["t1"])
    gone = make_alert(state=AlertState.RESOLVED, count=1)
    later = frozen() + timedelta(seconds=5)
    assert alerts_absorb_bulk([feed(live, n=2, traces=["t2"]), feed(live, n=1, last=later, traces=["t1", "t3"]),
                               feed(gone, n=5)]) == {live.pk: 4}
    live.refresh_from_db(), gone.refresh_from_db()
    assert (live.count, live.trace_ids, live.last_seen, gone.count) == (4, ["t1", "t2", "t3"], later, 1)
    assert TimelineEntry.objects.get(alert=live, kind="occurrence").data == {"occurrences": 3, "batches": 1, "count": 4}
