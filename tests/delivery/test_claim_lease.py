"""Claims and their lease under clock steps, and a recording transaction lost to a deadlock: in both
cases a message that went out once must not be sent again (the clock-step reliability scenario sent
every retry twice when the worker's recording transaction was the victim of a deadlock with an
escalation).

The application clock is stepped through its test hook (``apps/core/clock.py``), as the reliability
scenario does for whole processes; the database's clock is not moved."""
from __future__ import annotations

import logging
import math
import threading
import time
from datetime import timedelta
from ipaddress import ip_network

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from apps.alerts.models import Alert
from apps.core import clock
from apps.delivery import dispatch
from apps.delivery.models import Delivery, DeliveryAttempt, WebhookEndpoint
from apps.delivery.services import create_endpoint
from tests.delivery.peers import Hook, fire_alert

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def loopback(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = [ip_network("127.0.0.0/8")]
    settings.DELIVERY_CLAIM_LEASE_SECONDS = 60


@pytest.fixture
def step_clock(tmp_path, monkeypatch):
    """step_clock(seconds): this process's application clock is now ``seconds`` off the true time."""
    offset_file = tmp_path / "clock-offset"
    offset_file.write_text("0\n")
    monkeypatch.setattr(clock, "OFFSET_FILE", str(offset_file))

    def step(seconds: float) -> None:
        offset_file.write_text(f"{seconds}\n")
        clock._offset["read_at"] = -math.inf  # re-read now instead of within the second

    step(0)
    yield step
    clock._offset.update(read_at=-math.inf, seconds=0.0)


@pytest.fixture
def hook():
    with Hook() as h:
        yield h


@pytest.fixture
def due_delivery(tenant, hook, clean_redis):
    """One alert.triggered delivery to ``hook``, due now; the on-commit doorbell is flushed away."""
    create_endpoint(tenant=tenant, url=hook.url)
    fire_alert(tenant)
    clean_redis.flushdb()
    d = Delivery.objects.get()
    Delivery.objects.filter(pk=d.pk).update(next_attempt_at=clock.now())
    return d


def test_live_claim_is_not_taken_back_after_the_app_clock_steps_forward(step_clock, due_delivery):
    [held] = dispatch.claim([due_delivery.pk])  # a worker holds it and is sending
    step_clock(3 * 3600)  # the host clock steps forward 3 h, far past the 60 s lease
    assert dispatch.sweep() == {"claimed": 0, "stuck": 0}
    assert dispatch.claim([due_delivery.pk]) == []  # a doorbell for it finds it held too
    row = Delivery.objects.get(pk=due_delivery.pk)
    assert (row.state, row.claim_token) == ("SENDING", held.claim_token)
    # The sweeper's kind of claim renewal on the stepped clock keeps it held as well.
    assert [d.pk for d in dispatch.claim([due_delivery.pk], held.claim_token)] == [due_delivery.pk]
    assert dispatch.sweep() == {"claimed": 0, "stuck": 0}


def test_dead_claim_is_taken_back_after_the_app_clock_steps_back(step_clock, settings, due_delivery):
    settings.DELIVERY_CLAIM_LEASE_SECONDS = 1
    step_clock(3 * 3600)
    [held] = dispatch.claim([due_delivery.pk])  # claimed by a worker that then dies
    step_clock(0)  # the clock is corrected: back 3 h
    time.sleep(1.2)  # the lease, in real time
    [again] = dispatch.claim([due_delivery.pk])
    assert again.claim_token != held.claim_token  # taken back after the lease, not 3 h later


@pytest.mark.parametrize("other_lock,deadlock", [
    # An escalation: inserting its delivery checks the foreign key (FOR KEY SHARE on the endpoint).
    # Recording locks endpoints FOR NO KEY UPDATE, which KEY SHARE does not wait for: no deadlock.
    ("FOR KEY SHARE", False),
    # A transaction that changes the endpoint itself after the alert: a real deadlock, which
    # PostgreSQL breaks by rolling the recording back; it is recorded again, not sent again.
    ("FOR NO KEY UPDATE", True),
])
def test_recording_beside_an_escalation_is_recorded_once_not_sent_twice(tenant, hook, due_delivery, caplog,
                                                                         other_lock, deadlock):
    """The worker's recording transaction locks the endpoint (its failure streak changes), then the
    alert; another transaction holds the alert and then needs the endpoint. Before the fixes the
    escalation case deadlocked, the task failed, the row stayed SENDING for the lease and the sweeper
    sent it again."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks and deadlock detection are PostgreSQL's (SQLite serializes writers)")
    WebhookEndpoint.objects.filter(tenant=tenant).update(failure_streak=1)  # a first attempt had failed
    endpoint_id = due_delivery.endpoint_id
    holding, saw_worker_wait = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def escalation() -> None:
        try:
            with transaction.atomic(), connection.cursor() as cur:
                cur.execute("SET LOCAL deadlock_timeout = '10s'")  # the worker's 1 s check finds the cycle first
                Alert.objects.filter(pk=due_delivery.alert_id).update(updated_at=timezone.now())
                holding.set()
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))")
                    if cur.fetchone()[0]:
                        saw_worker_wait.set()
                        break
                    time.sleep(0.02)
                cur.execute(f"SELECT 1 FROM delivery_webhookendpoint WHERE id = %s {other_lock}", [endpoint_id])
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    other = threading.Thread(target=escalation)
    other.start()
    try:
        assert holding.wait(10)
        with caplog.at_level(logging.WARNING, logger="apps.delivery"):
            made = dispatch.process([due_delivery.pk])
    finally:
        other.join(30)
    assert not errors, errors
    assert saw_worker_wait.is_set(), "the worker's recording never waited for the alert row"
    rolled_back = any("rolled back by the database" in r.getMessage() for r in caplog.records)
    assert rolled_back is deadlock, "the deadlock expected for this lock order did (not) happen"
    assert made == 1 and len(hook.requests) == 1
    row = Delivery.objects.get(pk=due_delivery.pk)
    assert (row.state, row.attempts, row.claim_token) == ("DELIVERED", 1, "")
    assert list(DeliveryAttempt.objects.filter(delivery=row).values_list("number", "success")) == [(1, True)]
    assert WebhookEndpoint.objects.get(pk=endpoint_id).failure_streak == 0
    assert Alert.objects.get(pk=due_delivery.alert_id).delivery_state == "DELIVERED"
    # Long after the lease, nothing is left for the sweeper to send again.
    Delivery.objects.filter(pk=row.pk).update(claimed_at=timezone.now() - timedelta(hours=1))
    assert dispatch.sweep() == {"claimed": 0, "stuck": 0}


def test_reconcile_does_not_release_a_live_claim_after_the_app_clock_steps_forward(step_clock, due_delivery):
    from apps.delivery.maintenance import release_stuck

    [held] = dispatch.claim([due_delivery.pk])
    step_clock(3 * 3600)
    assert release_stuck(clock.now()) == 0
    assert Delivery.objects.get(pk=due_delivery.pk).claim_token == held.claim_token
