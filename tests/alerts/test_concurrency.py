"""Races on real PostgreSQL: two threads, two connections, two transactions at once."""
from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import close_old_connections, connection, transaction

from apps.alerts import services
from apps.alerts.models import Alert, AlertState, TimelineEntry
from apps.delivery import outbox
from apps.core.errors import Conflict

from .conftest import fire_kwargs

pytestmark = pytest.mark.django_db(transaction=True)


def run_in_thread(target, *args) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def body():
        try:
            box["result"] = target(*args)
        except Exception as exc:  # reported to the test, which asserts on it
            box["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=body)
    thread.start()
    return thread, box


def test_two_operators_acknowledge_at_once_one_wins_one_gets_409(make_alert, make_user):
    alert = make_alert()
    first_in = threading.Event()

    def first():
        with transaction.atomic():
            out = services.alert_acknowledge(alert_id=alert.pk, actor=None, note="first")
            first_in.set()
            time.sleep(0.3)  # hold the row lock while the other operator tries
            return out

    def second():
        first_in.wait(5)
        return services.alert_acknowledge(alert_id=alert.pk, actor=None, note="second")

    t1, r1 = run_in_thread(first)
    t2, r2 = run_in_thread(second)
    t1.join(10), t2.join(10)
    assert r1["result"].state == AlertState.ACKNOWLEDGED
    assert isinstance(r2["error"], Conflict) and r2["error"].details["state"] == "ACKNOWLEDGED"
    assert list(TimelineEntry.objects.filter(alert=alert, kind="acknowledged").values_list("message", flat=True)) == [
        "first"]


def test_two_acknowledge_requests_over_http(make_alert, make_token, api, tenant):
    alert = make_alert()
    tokens = [make_token(tenant, "alerts:read,alerts:write", name=f"op{i}") for i in range(2)]
    barrier = threading.Barrier(2)

    def post(token):
        barrier.wait(5)
        return api(token).post(f"/api/v1/alerts/{alert.pk}/ack", {}, format="json")

    threads = [run_in_thread(post, t) for t in tokens]
    for t, _ in threads:
        t.join(10)
    codes = sorted(box["result"].status_code for _, box in threads)
    assert codes == [200, 409]
    loser = next(box["result"] for _, box in threads if box["result"].status_code == 409)
    assert loser.json()["error"]["details"]["state"] == "ACKNOWLEDGED"
    assert Alert.objects.get(pk=alert.pk).state == AlertState.ACKNOWLEDGED


def test_two_workers_fire_the_same_fingerprint_one_alert_counts_summed(tenant, plugin):
    created_first = threading.Event()

    def first():
        with transaction.atomic():
            result = services.fire_alert(**fire_kwargs(tenant, plugin, occurrences=25))
            created_first.set()
            time.sleep(0.3)  # the second worker's INSERT now waits on our uncommitted unique key
            return result

    def second():
        created_first.wait(5)
        with transaction.atomic():
            return services.fire_alert(**fire_kwargs(tenant, plugin, occurrences=7, trace_ids=["t9"]))

    t1, r1 = run_in_thread(first)
    t2, r2 = run_in_thread(second)
    t1.join(10), t2.join(10)
    assert "error" not in r1 and "error" not in r2, (r1, r2)
    assert r1["result"].created and r2["result"].absorbed
    alert = Alert.objects.get()
    assert (alert.count, alert.trace_ids) == (32, ["t1", "t2", "t9"])
    assert TimelineEntry.objects.filter(alert=alert, kind="created").count() == 1


def test_two_escalation_sweeps_at_once_escalate_each_alert_once(tenant, plugin, make_alert, monkeypatch):
    from apps.core import clock

    due = [make_alert(next_escalation_at=clock.now() - timedelta(seconds=1)) for _ in range(10)]
    sent: list[int] = []
    lock = threading.Lock()

    notify = outbox.notify

    def slow_notify(notifications, **kwargs):
        with lock:
            sent.extend(n.alert_id for n in notifications)
        time.sleep(0.02)  # widen the window in which both sweeps hold rows
        return notify(notifications, **kwargs)

    monkeypatch.setattr(outbox, "notify", slow_notify)
    barrier = threading.Barrier(2)
    try:
        def sweep():
            barrier.wait(5)
            return services.escalate_due()

        threads = [run_in_thread(sweep) for _ in range(2)]
        for t, _ in threads:
            t.join(20)
    finally:
        monkeypatch.undo()
    assert sum(box["result"] for _, box in threads) == 10
    assert sorted(sent) == sorted(a.pk for a in due)
    assert set(Alert.objects.values_list("escalation_level", flat=True)) == {1}
    assert TimelineEntry.objects.filter(kind="escalated").count() == 10
    close_old_connections()
