"""A downgraded webhook endpoint is behind a circuit breaker: its new rows are neither sent by the
detect task nor rung, the sweeper sends it one probe at a time (DELIVERY_DOWNGRADED_IN_FLIGHT), and
the probe that succeeds restores it and rings the rows that waited. Other endpoints' rows are swept
as before, and a disabled endpoint's rows still reach their end."""
from __future__ import annotations

import threading
import time
from datetime import timedelta
from ipaddress import ip_network

import pytest
from django.utils import timezone

from apps.delivery import dispatch
from apps.delivery import tasks as deliver_tasks
from apps.delivery.models import Delivery, WebhookEndpoint
from apps.delivery.services import create_endpoint, update_endpoint
from tests.delivery.peers import Hook, fire_alert
from tests.support.locks import held_elsewhere

# The doorbells ring on commit; the sweep runs on SQLite too (make run).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.both_databases]


@pytest.fixture(autouse=True)
def loopback(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = [ip_network("127.0.0.0/8")]
    settings.DELIVERY_RETRY_SCHEDULE = [10, 30, 120]
    settings.DELIVERY_DOWNGRADE_AFTER_FAILURES = 3
    settings.DELIVERY_DOWNGRADED_IN_FLIGHT = 1


@pytest.fixture
def enqueued(monkeypatch):
    """The deliver tasks that would have been published, as (ids, claim token); none runs by itself."""
    tasks: list[tuple[list[int], str | None]] = []
    monkeypatch.setattr(deliver_tasks.deliver_batch, "delay",
                        lambda ids, claim_token=None: tasks.append((list(ids), claim_token)))
    monkeypatch.setattr(deliver_tasks.deliver_attempt, "delay", lambda i: tasks.append(([i], None)))
    return tasks


def run(task: tuple[list[int], str | None]) -> None:
    ids, token = task
    dispatch.process(ids, token)


def sending(ids: list[int], token: str | None, hook: Hook) -> threading.Thread:
    """Send these rows in another thread (as a worker would) and return once ``hook`` has a request:
    the caller holds the answer back and does its part while the send is out, then joins."""
    from django.db import connection

    def send():
        try:
            dispatch.process(ids, token)
        finally:
            connection.close()

    sender = threading.Thread(target=send)
    sender.start()
    deadline = time.monotonic() + 10
    while not hook.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    return sender


def downgrade(endpoint: WebhookEndpoint) -> None:
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failure_streak=3, downgraded_at=timezone.now())


def test_one_probe_at_a_time_then_the_waiting_rows_go_out_once_it_answers(tenant, other_tenant, enqueued):
    answer = {"status": 500}
    with Hook(lambda n, p, b: (answer["status"], {})) as hook, Hook() as healthy:
        endpoint, _ = create_endpoint(tenant=tenant, url=hook.url, event_types=["alert.triggered"])
        downgrade(endpoint)
        rows = []
        for i in range(5):
            alert = fire_alert(tenant, title=f"waiting {i}")
            rows.append(Delivery.objects.get(alert=alert))
        assert [(r.state, r.attempts) for r in rows] == [("DOWNGRADED", 0)] * 5
        assert enqueued == []  # not rung (and this tenant has no fallback contact to ring)

        # Another tenant's retry is due at the same time: the breaker does not hold it up.
        other, _ = create_endpoint(tenant=other_tenant, url=healthy.url, event_types=["alert.triggered"])
        fire_alert(other_tenant)
        enqueued.clear()
        retry = Delivery.objects.get(endpoint=other)
        Delivery.objects.filter(pk=retry.pk).update(state="PENDING", attempts=1, next_attempt_at=timezone.now())

        assert dispatch.sweep() == {"claimed": 2, "stuck": 0}
        [(claimed, token)] = enqueued
        assert sorted(claimed) == sorted([rows[0].pk, retry.pk])  # the oldest waiting row is the probe
        assert dispatch.sweep() == {"claimed": 0, "stuck": 0}  # none more while the probe is in flight
        run(enqueued.pop())
        assert len(hook.requests) == 1 and len(healthy.requests) == 1
        failed = Delivery.objects.get(pk=rows[0].pk)
        assert (failed.attempts, failed.next_attempt_at) == (1, None)  # failed, and parked again
        endpoint.refresh_from_db()
        wait = (endpoint.next_probe_at - timezone.now()).total_seconds()
        assert 24 - 1 <= wait <= 36 + 1  # the schedule's 30 s (+-20 %): its 10 s went to the downgrade
        assert dispatch.sweep() == {"claimed": 0, "stuck": 0}  # the next probe waits for it

        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(next_probe_at=timezone.now())
        assert dispatch.sweep() == {"claimed": 1, "stuck": 0}
        assert enqueued[-1][0] == [rows[1].pk]  # the next one never tried (round robin), not the same again
        answer["status"] = 200
        run(enqueued.pop())
        endpoint.refresh_from_db()
        assert (endpoint.downgraded_at, endpoint.failure_streak, endpoint.next_probe_at) == (None, 0, None)  # restored
        # The restore rang the rows that waited, the oldest first (the failed probe among them).
        [(released, token)] = enqueued
        assert released == [rows[0].pk] + [r.pk for r in rows[2:]] and token is None
        run(enqueued.pop())
    assert [Delivery.objects.get(pk=r.pk).state for r in rows] == ["DELIVERED"] * 5
    assert len(hook.requests) == 6 and len(set(hook.ids())) == 5  # the failed probe twice, the others once


def test_rows_behind_a_breaker_stay_out_of_the_sweepers_due_scan(tenant, other_tenant, enqueued):
    """The due scan reads delivery_due (``next_attempt_at <= now``): a parked row has no
    next_attempt_at, so however long a dead endpoint's backlog, the scan for everyone else's
    retries does not walk it (bench/breaker.py measures the sweep)."""
    endpoint, _ = create_endpoint(tenant=tenant, url="http://127.0.0.1:9/hook", event_types=["alert.triggered"])
    healthy, _ = create_endpoint(tenant=other_tenant, url="http://127.0.0.1:9/other", event_types=["alert.triggered"])
    before = fire_alert(tenant, title="failing before the downgrade")
    Delivery.objects.filter(alert=before).update(state="PENDING", attempts=2,
                                                 next_attempt_at=timezone.now() - timedelta(seconds=1))
    downgrade(endpoint)
    for i in range(40):
        fire_alert(tenant, title=f"backlog {i}")
    fire_alert(other_tenant)
    retry = Delivery.objects.get(endpoint=healthy)
    Delivery.objects.filter(pk=retry.pk).update(state="PENDING", attempts=1, next_attempt_at=timezone.now())

    def in_due_range():
        return set(Delivery.objects.filter(state__in=["PENDING", "DOWNGRADED"], next_attempt_at__lte=timezone.now())
                   .values_list("pk", flat=True))

    waiting = Delivery.objects.filter(endpoint=endpoint)
    assert in_due_range() == {retry.pk, waiting.get(alert=before).pk}  # written parked: 40 rows out of it
    enqueued.clear()
    assert dispatch.sweep() == {"claimed": 2, "stuck": 0}  # the other tenant's retry and one probe
    assert retry.pk in enqueued[0][0]
    # The row that failed before the downgrade was parked by the sweep's upkeep (downgraded first).
    row = waiting.get(alert=before)
    assert (row.state, row.next_attempt_at, row.attempts) == ("DOWNGRADED", None, 2) and row.downgraded_at
    assert in_due_range() == set()
    assert waiting.filter(state="DOWNGRADED", next_attempt_at__isnull=True).count() == 40  # 41 less the probe


def test_a_dead_endpoints_backlog_is_not_reported_as_a_stuck_pipeline(tenant, enqueued):
    """Waiting behind a breaker is not "due but not attempted": the watchdog's emergency
    (pipeline-stuck) is for rows no worker picks up, and a parked row is not due."""
    from apps.ops import figures, self_monitoring

    endpoint, _ = create_endpoint(tenant=tenant, url="http://127.0.0.1:9/hook", event_types=["alert.triggered"])
    downgrade(endpoint)
    for i in range(5):
        fire_alert(tenant, title=f"waiting {i}")
    dispatch.sweep()  # one probe in flight, four parked
    later = timezone.now() + timedelta(hours=2)
    backlog = figures.backlog(later, {})
    assert backlog.deliveries_overdue == 0 and sum(backlog.deliveries_pending.values()) == 5
    assert self_monitoring.check_pipeline(later) is None
    # Rows that are due and left alone still are.
    Delivery.objects.filter(state="DOWNGRADED").update(next_attempt_at=timezone.now())
    assert figures.backlog(later, {}).deliveries_overdue == 4


@pytest.mark.parametrize("endpoint_state", ["downgraded", "restored"])
def test_rows_left_parked_past_their_expiry_by_a_failing_upkeep_are_reported_as_a_stuck_pipeline(
        tenant, enqueued, monkeypatch, endpoint_state):
    """The breaker's upkeep fails a parked row at its expiry (``hold``, downgraded endpoint) or makes
    it due once the endpoint is restored (``drain``). When that step keeps failing, the rows would
    wait parked for good with only a log line at each sweep: the watchdog reports them, and once
    the step works again they reach their end (failed, or sent to the receiver that is back) and
    the report clears."""
    from apps.delivery import breaker
    from apps.ops import figures, self_monitoring

    with Hook() as hook:
        endpoint, _ = create_endpoint(tenant=tenant, url=hook.url, event_types=["alert.triggered"])
        downgrade(endpoint)
        for i in range(3):
            fire_alert(tenant, title=f"waiting {i}")
        if endpoint_state == "restored":
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failure_streak=0, downgraded_at=None)
        Delivery.objects.filter(endpoint=endpoint).update(expires_at=timezone.now() - timedelta(minutes=6))
        step = "hold" if endpoint_state == "downgraded" else "drain"

        def failing(*args, **kwargs):
            raise RuntimeError(f"{step} cannot run")

        working = {name: getattr(breaker, name) for name in (step, "probes")}
        monkeypatch.setattr(breaker, step, failing)
        monkeypatch.setattr(breaker, "probes", lambda endpoint_ids, now: [])  # no probe takes a row out
        dispatch.sweep()
        parked = Delivery.objects.filter(endpoint=endpoint, next_attempt_at__isnull=True, state="DOWNGRADED")
        assert parked.count() == 3
        backlog = figures.backlog(timezone.now(), {})
        assert (backlog.deliveries_overdue, backlog.parked_expired) == (3, 3)
        assert 360 <= backlog.oldest_overdue_age < 400
        finding = self_monitoring.check_pipeline(timezone.now())
        assert finding is not None and finding.severity == "emergency"
        assert "3 deliveries parked behind a webhook's circuit breaker past their expiry" in finding.title
        assert "due but not attempted" not in finding.title  # none is due: the two kinds are told apart

        for name, function in working.items():
            monkeypatch.setattr(breaker, name, function)
        dispatch.sweep()  # hold fails them; or drain makes them due and rings them
        for task in list(enqueued):
            run(task)
    end = "FAILED" if endpoint_state == "downgraded" else "DELIVERED"
    assert sorted(Delivery.objects.filter(endpoint=endpoint).values_list("state", flat=True)) == [end] * 3
    assert len(hook.requests) == (0 if end == "FAILED" else 3)
    assert figures.backlog(timezone.now(), {}).deliveries_overdue == 0
    assert self_monitoring.check_pipeline(timezone.now()) is None


def test_a_restored_endpoint_gets_its_backlog_chunk_by_chunk_each_row_once(tenant, monkeypatch, enqueued):
    """Restored by the tenant (re-enabled) rather than by a probe: the sweeper makes the parked rows
    due and rings them CHUNK at a time, the next chunk only once the last one has been claimed."""
    from apps.delivery import breaker

    monkeypatch.setattr(breaker, "CHUNK", 3)
    with Hook() as hook:
        endpoint, _ = create_endpoint(tenant=tenant, url=hook.url, event_types=["alert.triggered"])
        downgrade(endpoint)
        alerts = [fire_alert(tenant, title=f"waiting {i}") for i in range(7)]
        # The oldest by their retry window (a manual retry renews it), not by id: the last three.
        Delivery.objects.filter(alert__in=alerts[4:]).update(expires_at=timezone.now() + timedelta(hours=23))
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(enabled=False)
        endpoint.refresh_from_db()
        update_endpoint(endpoint=endpoint, enabled=True)  # clears the downgrade
        def sweep(then_send: bool) -> int:
            enqueued.clear()
            assert dispatch.sweep()["claimed"] == 0  # rung, not claimed by the sweep: no retry waits behind them
            rung = sum(len(ids) for ids, _ in enqueued)
            for task in list(enqueued) if then_send else []:
                run(task)
            return rung

        assert sweep(then_send=False) == 3
        assert sweep(then_send=False) == 0  # the last chunk is still due, unclaimed
        run(([r.pk for r in Delivery.objects.filter(alert__in=alerts, next_attempt_at__isnull=False)], None))
        assert [sweep(then_send=True) for _ in range(4)] == [3, 1, 0, 0]
    rows = Delivery.objects.filter(alert__in=alerts)
    assert sorted(rows.values_list("state", flat=True)) == ["DELIVERED"] * 7
    assert len(hook.requests) == 7 and len(set(hook.ids())) == 7
    # The oldest first.
    firsts = sorted(rows.values_list("delivered_at", "alert_id"))
    assert sorted(a for _, a in firsts[:3]) == sorted(a.pk for a in alerts[4:])


def test_a_disabled_endpoint_s_parked_rows_end_failed(tenant, enqueued):
    endpoint, _ = create_endpoint(tenant=tenant, url="http://127.0.0.1:9/hook", event_types=["alert.triggered"])
    downgrade(endpoint)
    rows = [Delivery.objects.get(alert=fire_alert(tenant, title=f"waiting {i}")) for i in range(3)]
    assert all(r.next_attempt_at is None for r in rows)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(enabled=False, disabled_reason="by the tenant")
    enqueued.clear()
    dispatch.sweep()  # its drain makes them due and rings them
    assert sorted(pk for ids, _ in enqueued for pk in ids) == sorted(r.pk for r in rows)
    for task in list(enqueued):
        run(task)
    assert {(r.state, "disabled" in r.last_error) for r in Delivery.objects.filter(pk__in=[r.pk for r in rows])} \
        == {("FAILED", True)}


def test_retry_deliveries_leaves_a_dead_endpoints_backlog_parked(tenant, other_tenant, enqueued):
    """The hourly ``retry_deliveries --since 24h`` of the README's crontab renews the waiting rows'
    window but must not put a dead endpoint's backlog back in the due range."""
    from apps.delivery.services import retry_deliveries

    endpoint, _ = create_endpoint(tenant=tenant, url="http://127.0.0.1:9/hook", event_types=["alert.triggered"])
    downgrade(endpoint)
    waiting = [Delivery.objects.get(alert=fire_alert(tenant, title=f"waiting {i}")) for i in range(4)]
    gave_up = waiting[0]
    Delivery.objects.filter(pk=gave_up.pk).update(state="FAILED", finished_at=timezone.now())
    # A non-notifying event that expired behind the breaker: FAILED, never downgraded.
    update = waiting.pop()
    Delivery.objects.filter(pk=update.pk).update(event_type="alert.updated", state="FAILED", downgraded_at=None,
                                                 finished_at=timezone.now())
    other, _ = create_endpoint(tenant=other_tenant, url="http://127.0.0.1:9/other", event_types=["alert.triggered"])
    elsewhere = Delivery.objects.get(alert=fire_alert(other_tenant))
    Delivery.objects.filter(pk=elsewhere.pk).update(state="DOWNGRADED", downgraded_at=timezone.now(), attempts=3,
                                                    next_attempt_at=timezone.now() + timedelta(hours=1))
    before = Delivery.objects.get(pk=waiting[1].pk).expires_at

    result = retry_deliveries(since=timezone.now() - timedelta(hours=24))
    assert result["retried"] == 5
    for row in Delivery.objects.filter(pk__in=[r.pk for r in waiting]):
        assert (row.state, row.next_attempt_at) == ("DOWNGRADED", None) and row.finished_at is None
        assert row.expires_at > before  # renewed
    row = Delivery.objects.get(pk=update.pk)
    assert (row.state, row.next_attempt_at) == ("PENDING", None)
    row = Delivery.objects.get(pk=elsewhere.pk)
    assert row.next_attempt_at <= timezone.now()  # an endpoint without a breaker: due now, as before


def test_rows_parked_behind_a_deleted_endpoint_reach_their_end(tenant, enqueued):
    from apps.delivery.services import delete_endpoint

    endpoint, _ = create_endpoint(tenant=tenant, url="http://127.0.0.1:9/hook", event_types=["alert.triggered"])
    downgrade(endpoint)
    alert = fire_alert(tenant)
    row = Delivery.objects.get(alert=alert)
    assert row.next_attempt_at is None
    delete_endpoint(endpoint=WebhookEndpoint.objects.get(pk=endpoint.pk))
    enqueued.clear()
    dispatch.sweep()  # its drain makes it due and rings it
    [(ids, token)] = enqueued
    assert ids == [row.pk] and token is None
    run(enqueued.pop())
    row.refresh_from_db()
    assert row.state == "FAILED" and "deleted" in row.last_error


def test_probes_follow_the_retry_schedule_up_to_the_cap_or_a_longer_retry_after(tenant, settings, enqueued):
    """A dead endpoint is knocked on at the schedule's pace, not at every sweep. The failure that
    downgraded it was the schedule's first step (10 s); its probes take the next ones (30 s, then
    the 45 s cap instead of 120 s), and a receiver's longer Retry-After is honoured."""
    settings.DELIVERY_PROBE_MAX_INTERVAL_SECONDS = 45
    answers = iter([(500, {})] * 4 + [(503, {"Retry-After": "600"})])
    with Hook(lambda n, p, b: next(answers)) as hook:
        endpoint, _ = create_endpoint(tenant=tenant, url=hook.url, event_types=["alert.triggered"])
        downgrade(endpoint)
        for i in range(6):
            fire_alert(tenant, title=f"waiting {i}")
        waits = []
        for _ in range(5):
            enqueued.clear()
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(next_probe_at=None)  # its time has come
            assert dispatch.sweep()["claimed"] == 1
            before = timezone.now()
            run(enqueued[0])
            assert dispatch.sweep()["claimed"] == 0  # not before next_probe_at
            endpoint.refresh_from_db()
            waits.append((endpoint.next_probe_at - before).total_seconds())
        assert len(hook.requests) == 5
    # Each wait is measured from before the probe's send, so it also holds the send's own time.
    assert 24 <= waits[0] < 36 + 2, waits  # 30 s +-20 % jitter
    assert all(45 <= w < 47 for w in waits[1:4]), waits  # 120 s +-20 %, capped
    assert 600 <= waits[4] < 602, waits  # Retry-After: 600


def test_a_silent_endpoint_holds_one_send_whatever_its_backlog(tenant, settings, enqueued):
    settings.DELIVERY_DOWNGRADED_IN_FLIGHT = 2
    endpoint, _ = create_endpoint(tenant=tenant, url="http://127.0.0.1:9/hook", event_types=["alert.triggered"])
    downgrade(endpoint)
    for i in range(30):
        fire_alert(tenant, title=f"backlog {i}")
    assert dispatch.sweep() == {"claimed": 2, "stuck": 0}
    assert dispatch.sweep() == {"claimed": 0, "stuck": 0}
    assert Delivery.objects.filter(endpoint=endpoint, state="SENDING").count() == 2
    assert Delivery.objects.filter(endpoint=endpoint, state="DOWNGRADED", claim_token="").count() == 28


def test_a_disabled_endpoint_s_rows_are_still_swept_to_their_end(tenant, enqueued):
    endpoint, _ = create_endpoint(tenant=tenant, url="http://127.0.0.1:9/hook", event_types=["alert.triggered"])
    downgrade(endpoint)
    fire_alert(tenant)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(enabled=False)
    row = Delivery.objects.get(endpoint=endpoint)
    Delivery.objects.filter(pk=row.pk).update(attempts=1, next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert dispatch.sweep() == {"claimed": 1, "stuck": 0}
    run(enqueued.pop())
    row.refresh_from_db()
    assert row.state == "FAILED"  # the disabled endpoint's row ends instead of waiting forever


def test_rows_still_pending_when_their_endpoint_is_downgraded_get_their_fallback_at_the_next_sweep(
        tenant, enqueued):
    from apps.alerts.models import Alert
    from apps.tenants.models import FallbackContact

    FallbackContact.objects.create(tenant=tenant, kind="email", value="oncall@acme.example")
    endpoint, _ = create_endpoint(tenant=tenant, url="http://127.0.0.1:9/hook", event_types=["alert.triggered"])
    early = [fire_alert(tenant, title=f"early {i}") for i in range(3)]
    # They failed once or twice before the endpoint was downgraded (by other rows' failures): each
    # retry is due later than the rows written after the downgrade, so probing in order would reach
    # them last, their alerts unreached meanwhile.
    Delivery.objects.filter(alert__in=early).update(state="PENDING", attempts=1,
                                                    next_attempt_at=timezone.now() + timedelta(seconds=10))
    downgrade(endpoint)
    later = [fire_alert(tenant, title=f"later {i}") for i in range(2)]
    enqueued.clear()
    dispatch.sweep()
    for alert in early:
        row = Delivery.objects.get(alert=alert, channel="webhook")
        assert (row.state, row.attempts) == ("DOWNGRADED", 1) and row.downgraded_at
        [fallback] = Delivery.objects.filter(source=row)
        assert fallback.channel == "email" and fallback.recipients == ["oncall@acme.example"]
        assert Alert.objects.get(pk=alert.pk).delivery_state == "DOWNGRADED"
    rung = {pk for ids, _ in enqueued for pk in ids}
    assert {d.pk for d in Delivery.objects.filter(channel="email", alert__in=early)} <= rung
    # Each later alert got its own fallback when it was written, once.
    assert Delivery.objects.filter(channel="email", alert__in=later).count() == 2
    dispatch.sweep()
    assert Delivery.objects.filter(channel="email").count() == 5  # nothing sent twice


def test_rows_that_waited_past_their_max_age_behind_the_breaker_end_failed(tenant, enqueued):
    from apps.alerts.models import Alert

    endpoint, _ = create_endpoint(tenant=tenant, url="http://127.0.0.1:9/hook", event_types=["alert.triggered"])
    downgrade(endpoint)
    old, parked, young = (fire_alert(tenant, title=title) for title in ("old", "parked", "young"))
    # One in backoff from before the downgrade, one parked (as written): both past their max age.
    Delivery.objects.filter(alert=old).update(expires_at=timezone.now() - timedelta(seconds=1),
                                              next_attempt_at=timezone.now() + timedelta(hours=1))
    Delivery.objects.filter(alert=parked).update(expires_at=timezone.now() - timedelta(seconds=1))
    dispatch.sweep()
    for alert in (old, parked):
        row = Delivery.objects.get(alert=alert)
        assert (row.state, row.next_attempt_at) == ("FAILED", None) and row.finished_at
        assert "max age" in row.last_error
        assert Alert.objects.get(pk=alert.pk).delivery_state == "FAILED"
    assert Delivery.objects.get(alert=young).state in ("DOWNGRADED", "SENDING")  # waiting, or the probe


def test_a_row_that_expires_before_it_was_ever_downgraded_gets_its_fallback_first(tenant, monkeypatch, enqueued):
    from apps.delivery import breaker
    from apps.tenants.models import FallbackContact

    FallbackContact.objects.create(tenant=tenant, kind="email", value="oncall@acme.example")
    endpoint, _ = create_endpoint(tenant=tenant, url="http://127.0.0.1:9/hook", event_types=["alert.triggered"])
    # One row per sweep: the expired row must not lose its fallback to an older late row that
    # fills the sweep's share of rows to downgrade.
    monkeypatch.setattr(breaker, "CHUNK", 1)
    older = fire_alert(tenant, title="older, not expired")
    alert = fire_alert(tenant)
    Delivery.objects.filter(alert=older).update(state="PENDING", attempts=1,
                                                next_attempt_at=timezone.now() + timedelta(minutes=1))
    Delivery.objects.filter(alert=alert).update(state="PENDING", attempts=2, last_error="HTTP 500",
                                                expires_at=timezone.now() - timedelta(seconds=1),
                                                next_attempt_at=timezone.now() + timedelta(minutes=5))
    downgrade(endpoint)
    dispatch.sweep()
    row = Delivery.objects.get(alert=alert, channel="webhook")
    assert row.state == "FAILED" and row.downgraded_at  # reached by fallback before it gave up
    assert row.last_error.startswith("gave up") and row.last_error.endswith("the last error: HTTP 500")
    assert Delivery.objects.filter(source=row, channel="email").count() == 1


def failed_before_the_downgrade(tenant):
    """An alert whose webhook row failed once before its endpoint was downgraded (PENDING, its
    retry 5 min away): the next sweep's hold must downgrade it and send its fallback."""
    endpoint, _ = create_endpoint(tenant=tenant, url="http://127.0.0.1:9/hook", event_types=["alert.triggered"])
    alert = fire_alert(tenant)
    Delivery.objects.filter(alert=alert).update(state="PENDING", attempts=1,
                                                next_attempt_at=timezone.now() + timedelta(minutes=5))
    downgrade(endpoint)
    return alert


def unrenderable(rows, now):
    """In place of ``recording.send_fallbacks``: a frozen body that cannot be rendered."""
    raise ValueError("a frozen body that cannot be rendered")


def test_a_failing_upkeep_does_not_stop_the_sweep_for_other_endpoints(tenant, other_tenant, monkeypatch, enqueued):
    from apps.delivery import recording

    stuck_behind = failed_before_the_downgrade(tenant)
    healthy, _ = create_endpoint(tenant=other_tenant, url="http://127.0.0.1:9/other", event_types=["alert.triggered"])
    fire_alert(other_tenant)
    retry = Delivery.objects.get(endpoint=healthy)
    Delivery.objects.filter(pk=retry.pk).update(state="PENDING", attempts=1, next_attempt_at=timezone.now())

    working = recording.send_fallbacks
    monkeypatch.setattr(recording, "send_fallbacks", unrenderable)
    assert dispatch.sweep()["claimed"] == 1 and enqueued[-1][0] == [retry.pk]
    assert Delivery.objects.get(alert=stuck_behind).state == "PENDING"  # rolled back, tried again next sweep
    monkeypatch.setattr(recording, "send_fallbacks", working)
    dispatch.sweep()
    assert Delivery.objects.get(alert=stuck_behind).state == "DOWNGRADED"


def test_a_failing_hold_does_not_stop_the_drain_of_restored_endpoints(tenant, other_tenant, monkeypatch,
                                                                       enqueued):
    from apps.delivery import recording

    stuck_behind = failed_before_the_downgrade(tenant)
    restored, _ = create_endpoint(tenant=other_tenant, url="http://127.0.0.1:9/other", event_types=["alert.triggered"])
    downgrade(restored)
    parked = Delivery.objects.get(alert=fire_alert(other_tenant))
    WebhookEndpoint.objects.filter(pk=restored.pk).update(downgraded_at=None, failure_streak=0)

    monkeypatch.setattr(recording, "send_fallbacks", unrenderable)
    dispatch.sweep()
    assert Delivery.objects.get(alert=stuck_behind).state == "PENDING"  # the hold failed
    assert Delivery.objects.get(pk=parked.pk).next_attempt_at is not None  # the drain ran all the same



def test_quiet_dead_endpoints_cost_the_sweep_no_statement_each(tenant, other_tenant, enqueued):
    """Every downgraded endpoint whose rows are all parked and none expired gives the upkeep nothing
    to do: the sweep finds that in one query, not in a transaction per endpoint (8.5 s a sweep with
    1,000 such endpoints: bench/breaker.py --dead). One among them with a row not parked, and one
    with an expired parked row, are still held at that sweep."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def dead_endpoints(n: int, tenant) -> list[WebhookEndpoint]:
        made = []
        for i in range(n):
            endpoint, _ = create_endpoint(tenant=tenant, url=f"http://127.0.0.1:9/dead-{len(made)}-{i}",
                                          event_types=["alert.triggered"])
            downgrade(endpoint)
            made.append(endpoint)
        fire_alert(tenant, title=f"parked at {n}")  # a parked row behind each
        WebhookEndpoint.objects.filter(pk__in=[e.pk for e in made]).update(
            next_probe_at=timezone.now() + timedelta(hours=1))  # probes paced: none due at this sweep
        return made

    def sweep_statements() -> int:
        with CaptureQueriesContext(connection) as queries:
            dispatch.sweep()
        return len(queries.captured_queries)

    from apps.tenants.models import Tenant

    third = Tenant.objects.create(slug="third", name="Third")
    dead_endpoints(2, other_tenant)
    assert Delivery.objects.filter(next_attempt_at__isnull=True, state="DOWNGRADED").count() == 2
    few = sweep_statements()
    dead_endpoints(20, third)
    assert Delivery.objects.filter(next_attempt_at__isnull=True, state="DOWNGRADED").count() == 22
    assert sweep_statements() == few

    stuck_behind = failed_before_the_downgrade(tenant)  # a row not parked yet
    expired = Delivery.objects.filter(endpoint__tenant=third).first()
    Delivery.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    dispatch.sweep()
    row = Delivery.objects.get(alert=stuck_behind)
    assert (row.state, row.next_attempt_at) == ("DOWNGRADED", None)  # downgraded and parked
    assert Delivery.objects.get(pk=expired.pk).state == "FAILED"
    assert Delivery.objects.filter(next_attempt_at__isnull=True, state="DOWNGRADED").count() == 22 - 1 + 1


def test_endpoints_due_for_a_probe_together_are_probed_with_one_read(tenant, other_tenant, settings, enqueued):
    """Endpoints downgraded together (a network partition) come due for their probes together: their
    probes are read in one statement on PostgreSQL (1,000 endpoints took 1.3-1.6 s one query each),
    each endpoint's least tried row first, then its oldest, up to its room."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from apps.delivery import breaker

    settings.DELIVERY_DOWNGRADED_IN_FLIGHT = 2
    endpoints = []
    for i, owner in enumerate([tenant, other_tenant] * 4):
        endpoint, _ = create_endpoint(tenant=owner, url=f"http://127.0.0.1:9/dead-{i}", event_types=["alert.triggered"])
        downgrade(endpoint)
        endpoints.append(endpoint)
    for i in range(3):
        fire_alert(tenant, title=f"{i}")
        fire_alert(other_tenant, title=f"{i}")
    rows = {e.pk: list(Delivery.objects.filter(endpoint=e).order_by("expires_at", "pk")) for e in endpoints}
    tried = rows[endpoints[0].pk][0]
    Delivery.objects.filter(pk=tried.pk).update(attempts=1)  # tried once: after its two untried siblings
    ids = [e.pk for e in endpoints]

    def probe_statements(endpoint_ids) -> tuple[list[int], int]:
        with transaction.atomic(), CaptureQueriesContext(connection) as queries:  # the sweep's claim transaction
            found = breaker.probes(endpoint_ids, timezone.now())
        return found, len(queries.captured_queries)

    found, many = probe_statements(ids)
    first = rows[endpoints[0].pk]
    assert found[:2] == [first[1].pk, first[2].pk]  # the untried ones first, the oldest of them first
    assert found == [r.pk for e in endpoints for r in (rows[e.pk][1:] if e == endpoints[0] else rows[e.pk][:2])]
    if connection.vendor == "postgresql":
        assert probe_statements(ids[:1])[1] == many  # eight endpoints' probes cost what one's do


def test_an_endpoint_downgraded_during_the_sweep_keeps_its_rows_parked(tenant, monkeypatch, enqueued):
    """A recording may downgrade an endpoint (and park its rows) while a sweep runs: the drain, at
    the sweep's end, must see it downgraded and leave its rows parked, not let them out to it."""
    from apps.delivery import breaker

    endpoint, _ = create_endpoint(tenant=tenant, url="http://127.0.0.1:9/hook", event_types=["alert.triggered"])
    row = Delivery.objects.get(alert=fire_alert(tenant))
    Delivery.objects.filter(pk=row.pk).update(state="PENDING", attempts=2,
                                              next_attempt_at=timezone.now() + timedelta(minutes=5))
    enqueued.clear()
    real = breaker.needing_hold

    def downgraded_meanwhile(endpoint_ids, now):  # as recording._failed would, mid-sweep
        downgrade(endpoint)
        Delivery.objects.filter(pk=row.pk).update(state="DOWNGRADED", downgraded_at=timezone.now(),
                                                  next_attempt_at=None)
        return real(endpoint_ids, now)

    monkeypatch.setattr(breaker, "needing_hold", downgraded_meanwhile)
    assert dispatch.sweep()["claimed"] == 0
    assert Delivery.objects.get(pk=row.pk).next_attempt_at is None and enqueued == []


def test_an_endpoint_whose_recording_is_in_progress_is_probed_at_a_later_sweep(tenant, enqueued):
    """A recording holds the endpoint's row while it parks a failed probe and paces the next: the
    sweep does not read the endpoint's pacing and in-flight count in between (a second probe at once)
    nor wait for it; it leaves the endpoint to the next sweep."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("SQLite runs one sweeper (make run), one writer at a time")
    endpoint, _ = create_endpoint(tenant=tenant, url="http://127.0.0.1:9/hook", event_types=["alert.triggered"])
    downgrade(endpoint)
    row = Delivery.objects.get(alert=fire_alert(tenant)).pk
    enqueued.clear()
    with held_elsewhere(lambda: WebhookEndpoint.objects.select_for_update(no_key=True).get(pk=endpoint.pk)):
        assert dispatch.sweep() == {"claimed": 0, "stuck": 0}
    assert dispatch.sweep() == {"claimed": 1, "stuck": 0} and enqueued[-1][0] == [row]


def test_overlapping_sweepers_take_turns_at_a_dead_endpoints_probes(tenant, monkeypatch, enqueued):
    """Two sweepers (scale-out) overlap: one has picked the dead endpoint's probe and not claimed it
    yet, while the other sweeps, sends its probe and sees it fail (parked again, the next probe
    paced). Without turns, the first then claims the re-parked row and sends a second probe at once,
    past the pacing and the in-flight cap it read before; with them, the second sweeper leaves the
    probes to the first."""

    from django.db import connection

    from apps.delivery import breaker

    if connection.vendor != "postgresql":
        pytest.skip("SQLite runs one sweeper (make run), one writer at a time")
    endpoint, _ = create_endpoint(tenant=tenant, url="http://127.0.0.1:9/hook", event_types=["alert.triggered"])
    downgrade(endpoint)
    rows = [Delivery.objects.get(alert=fire_alert(tenant, title=f"waiting {i}")).pk for i in range(2)]
    enqueued.clear()
    picked, go_on = threading.Event(), threading.Event()
    real, main = breaker.probes, threading.current_thread()

    def probes_then_pause(endpoint_ids, now):
        out = real(endpoint_ids, now)
        if threading.current_thread() is not main:
            picked.set()
            go_on.wait(20)
        return out

    monkeypatch.setattr(breaker, "probes", probes_then_pause)
    first: dict = {}

    def first_sweeper():
        try:
            first.update(dispatch.sweep())
        finally:
            connection.close()

    thread = threading.Thread(target=first_sweeper)
    thread.start()
    try:
        assert picked.wait(20)
        second = dispatch.sweep()
        while enqueued:  # whatever the second sweeper took goes out (and fails: nothing listens)
            run(enqueued.pop())
    finally:
        go_on.set()
        thread.join(30)
    while enqueued:
        run(enqueued.pop())
    attempts = Delivery.objects.filter(pk__in=rows).values_list("pk", "attempts", "next_attempt_at")
    assert sorted(attempts) == [(rows[0], 1, None), (rows[1], 0, None)]  # one probe sent, parked again
    assert second == {"claimed": 0, "stuck": 0} and first == {"claimed": 1, "stuck": 0}


def test_sends_in_flight_when_the_endpoint_is_downgraded_do_not_stretch_its_probe_pace(tenant, enqueued):
    """A storm's sends to a failing receiver fail together: the third downgrades the endpoint and
    the others, already in flight, fail just after. They are not probes: the first probe still goes
    at the schedule's first step (10 s), not at the cap as if five probes had failed; each probe
    that fails then takes the next step."""
    with Hook(lambda n, p, b: (500, {})) as hook:
        endpoint, _ = create_endpoint(tenant=tenant, url=hook.url, event_types=["alert.triggered"])
        for i in range(8):
            fire_alert(tenant, title=f"storm {i}")
        ids = [pk for task_ids, _ in enqueued for pk in task_ids]
        enqueued.clear()
        assert dispatch.process(ids) == 8  # one batch: all eight in flight together
        assert len(hook.requests) == 8
        endpoint.refresh_from_db()
        assert endpoint.downgraded_at is not None and endpoint.failure_streak == 8
        wait = (endpoint.next_probe_at - timezone.now()).total_seconds()
        assert 8 - 1 <= wait <= 12, wait  # 10 s +-20 %, where it was the 120 s step capped at 60 s

        waits = []
        for _ in range(2):
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(next_probe_at=timezone.now())
            enqueued.clear()
            assert dispatch.sweep()["claimed"] == 1
            before = timezone.now()
            run(enqueued.pop())
            endpoint.refresh_from_db()
            waits.append((endpoint.next_probe_at - before).total_seconds())
        assert len(hook.requests) == 10
    assert 24 <= waits[0] < 36 + 2, waits  # the first failed probe: 30 s +-20 %
    assert 60 <= waits[1] < 62, waits  # the second: 120 s, capped at DELIVERY_PROBE_MAX_INTERVAL_SECONDS


def test_a_longer_retry_after_of_a_send_in_flight_at_the_downgrade_still_holds_the_probes(tenant, enqueued):
    """Not a probe, but the receiver asked for time: the next probe waits for its Retry-After. A
    batch is recorded in its claim's order, the newest first: the oldest alert's answer comes after
    the downgrade (the sends run together, so the answer goes by the alert, not by arrival)."""
    with Hook(lambda n, p, b: (503, {"Retry-After": "300"}) if b'"storm 0"' in b else (500, {})) as hook:
        endpoint, _ = create_endpoint(tenant=tenant, url=hook.url, event_types=["alert.triggered"])
        for i in range(4):
            fire_alert(tenant, title=f"storm {i}")
        ids = [pk for task_ids, _ in enqueued for pk in task_ids]
        before = timezone.now()
        assert dispatch.process(sorted(ids)) == 4
        assert len(hook.requests) == 4
    endpoint.refresh_from_db()
    assert endpoint.downgraded_at is not None and endpoint.failed_probes == 0
    assert 300 <= (endpoint.next_probe_at - before).total_seconds() < 302


def test_a_failed_probe_keeps_a_longer_retry_after_recorded_while_it_was_in_flight(tenant, enqueued, settings):
    """A send that was in flight at the downgrade answers 503 Retry-After: 300 while a probe is out;
    the probe then fails plainly. Its step (30 s) must not cut the time the receiver asked for."""
    settings.DELIVERY_DOWNGRADED_IN_FLIGHT = 2  # room for the probe beside the send in flight
    release = threading.Event()

    def answer(n, path, body):
        if b'"late"' in body:
            release.wait(20)
            return 503, {"Retry-After": "300"}
        return 500, {}

    with Hook(answer) as hook:
        endpoint, _ = create_endpoint(tenant=tenant, url=hook.url, event_types=["alert.triggered"])
        fire_alert(tenant, title="late")
        ids = [pk for task_ids, _ in enqueued for pk in task_ids]
        enqueued.clear()

        sender = sending(ids, None, hook)
        try:
            assert len(hook.requests) == 1  # the late send is out, not answered yet
            downgrade(endpoint)
            fire_alert(tenant, title="parked")
            assert dispatch.sweep()["claimed"] == 1  # the probe
        finally:
            released = timezone.now()  # the late send is recorded after this, and before the join ends
            release.set()
            sender.join(30)
        recorded_by = timezone.now()
        run(enqueued.pop())  # the probe: 500
        assert len(hook.requests) == 2
    endpoint.refresh_from_db()
    assert endpoint.failed_probes == 1
    asked = timedelta(seconds=300)
    assert released + asked <= endpoint.next_probe_at <= recorded_by + asked, endpoint.next_probe_at


def test_a_new_url_for_a_downgraded_endpoint_is_probed_at_the_next_sweep(tenant, enqueued):
    """The old receiver's pace (a failed probe's step, or an hour's Retry-After) is not the new
    one's: a new URL clears it, the endpoint stays downgraded until the probe gets through."""
    with Hook(lambda n, p, b: (503, {"Retry-After": "3600"})) as old, Hook() as new:
        endpoint, _ = create_endpoint(tenant=tenant, url=old.url, event_types=["alert.triggered"])
        downgrade(endpoint)
        fire_alert(tenant, title="waiting")
        assert dispatch.sweep()["claimed"] == 1
        run(enqueued.pop())  # the probe fails; the receiver asks for an hour
        endpoint.refresh_from_db()
        assert endpoint.failed_probes == 1 and endpoint.next_probe_at > timezone.now() + timedelta(minutes=59)
        assert dispatch.sweep()["claimed"] == 0  # held by the hour

        update_endpoint(endpoint=endpoint, url=new.url)
        endpoint.refresh_from_db()
        assert endpoint.downgraded_at is not None and endpoint.next_probe_at is None and endpoint.failed_probes == 0
        assert dispatch.sweep()["claimed"] == 1
        run(enqueued.pop())
        assert len(new.requests) == 1
    endpoint.refresh_from_db()
    assert endpoint.downgraded_at is None
    assert Delivery.objects.get(endpoint=endpoint).state == "DELIVERED"


@pytest.mark.parametrize("old_answers", [(503, {"Retry-After": "3600"}), (410, {}), (200, {})],
                         ids=["fails", "gone", "succeeds"])
def test_a_probe_to_the_old_url_neither_paces_nor_restores_the_new_one(tenant, enqueued, old_answers):
    """The URL changes while a probe to the old receiver is out. Whatever the old receiver answers
    (an hour's Retry-After, 410 Gone, or a success) is not the new one's record: the endpoint stays
    enabled and downgraded with no pace, a failed row waits for the new URL instead of ending, and
    the next sweep probes the new URL, whose success restores the endpoint."""
    release = threading.Event()

    def old_receiver(n, path, body):
        release.wait(20)
        return old_answers

    with Hook(old_receiver) as old, Hook() as new:
        endpoint, _ = create_endpoint(tenant=tenant, url=old.url, event_types=["alert.triggered"])
        downgrade(endpoint)
        first, second = fire_alert(tenant, title="first"), fire_alert(tenant, title="second")
        assert dispatch.sweep()["claimed"] == 1
        [(ids, token)] = enqueued
        enqueued.clear()

        sender = sending(ids, token, old)
        try:
            assert len(old.requests) == 1  # the probe is out to the old URL, not answered yet
            update_endpoint(endpoint=endpoint, url=new.url)
        finally:
            release.set()
            sender.join(30)
        endpoint.refresh_from_db()
        assert (endpoint.downgraded_at is not None, endpoint.next_probe_at, endpoint.failed_probes) == (True, None, 0)
        assert endpoint.enabled and endpoint.disabled_reason == ""
        old_row = Delivery.objects.get(pk=ids[0])
        assert old_row.attempts == 1 and old_row.state == ("DELIVERED" if old_answers[0] == 200 else "DOWNGRADED")

        assert dispatch.sweep()["claimed"] == 1  # the new receiver's probe, at once
        run(enqueued.pop())
        assert len(new.requests) == 1 and len(old.requests) == 1
    endpoint.refresh_from_db()
    assert endpoint.downgraded_at is None and endpoint.failure_streak == 0
    states = Delivery.objects.filter(alert__in=[first, second]).values_list("state", flat=True)
    assert old_answers[0] != 200 or sorted(states) == ["DELIVERED", "DELIVERED"]


def test_a_backlog_expiring_at_once_is_failed_in_one_sweep_within_its_budget(tenant, enqueued, monkeypatch):
    """Rows renewed together (retry_deliveries) expire together: the sweep fails them chunk after
    chunk within UPKEEP_BUDGET_SECONDS, not one chunk per sweep, which the watchdog would report as
    rows left parked past their expiry. With no budget, one chunk per sweep."""
    from apps.delivery import breaker

    monkeypatch.setattr(breaker, "CHUNK", 3)
    monkeypatch.setattr(breaker, "probes", lambda endpoint_ids, now: [])
    endpoints = []
    for name in ("first", "second"):  # both get their turns, not the lowest id the whole budget
        endpoint, _ = create_endpoint(tenant=tenant, url=f"http://127.0.0.1:9/{name}", event_types=["alert.triggered"])
        downgrade(endpoint)
        endpoints.append(endpoint)
        for i in range(8):
            fire_alert(tenant, title=f"{name} {i}")
        # (fire_alert notifies every endpoint of the tenant: the first also gets the second's alerts.)
    rows = Delivery.objects.filter(endpoint__in=endpoints)
    rows.update(expires_at=timezone.now() - timedelta(seconds=1))
    counts = {e.pk: rows.filter(endpoint=e).count() for e in endpoints}
    assert min(counts.values()) > breaker.CHUNK

    def failed(endpoint):
        return rows.filter(endpoint=endpoint, state="FAILED").count()

    monkeypatch.setattr(dispatch, "UPKEEP_BUDGET_SECONDS", 0)
    dispatch.sweep()
    assert [failed(e) for e in endpoints] == [3, 3]
    # A budget of two more chunks (the clock steps a second per look): after a chunk each, one more
    # each, in turn (the second has 8 rows: its last 2), not both to the first.
    assert [counts[e.pk] for e in endpoints] == [16, 8]
    ticks = iter(range(1000))
    monkeypatch.setattr(dispatch, "_upkeep_clock", lambda: float(next(ticks)))
    monkeypatch.setattr(dispatch, "UPKEEP_BUDGET_SECONDS", 2.5)
    dispatch.sweep()
    assert [failed(e) for e in endpoints] == [9, 8]
    monkeypatch.setattr(dispatch, "UPKEEP_BUDGET_SECONDS", 1000)
    dispatch.sweep()
    assert [failed(e) for e in endpoints] == [counts[e.pk] for e in endpoints]
    assert enqueued == []  # nothing was sent: they expired behind the breaker


def test_a_new_url_clears_the_pace_of_a_downgrade_recorded_after_the_endpoint_was_read(tenant):
    """update_endpoint decides on the row as it stands, not on the caller's copy: read while the
    endpoint was healthy, then downgraded with an hour's pace, a new URL still clears that pace."""
    endpoint, _ = create_endpoint(tenant=tenant, url="http://127.0.0.1:9/old", event_types=["alert.triggered"])
    stale = WebhookEndpoint.objects.get(pk=endpoint.pk)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        failure_streak=4, downgraded_at=timezone.now(), next_probe_at=timezone.now() + timedelta(hours=1),
        failed_probes=1)
    updated = update_endpoint(endpoint=stale, url="http://127.0.0.1:9/new")
    endpoint.refresh_from_db()
    assert (endpoint.url, endpoint.next_probe_at, endpoint.failed_probes) == ("http://127.0.0.1:9/new", None, 0)
    assert endpoint.downgraded_at is not None and endpoint.failure_streak == 4  # still downgraded until a probe
    assert (updated.downgraded_at, updated.failure_streak) == (endpoint.downgraded_at, 4)  # what the API shows
