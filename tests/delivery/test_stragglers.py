"""A receiver that never answers holds its own rows, not the batch: the deliver task records the
sends that finished within DELIVERY_STRAGGLER_SECONDS, the process's straggler thread records the
rest when their deadline ends, and a destination holding its cap of stragglers gets no new sends."""
from __future__ import annotations

import os
import socket
import threading
import time
from ipaddress import ip_network

import pytest

from apps.delivery import dispatch, stragglers
from apps.delivery.models import Delivery, DeliveryAttempt
from apps.delivery.services import create_endpoint
from tests.delivery.peers import Hook, fire_alert

pytestmark = pytest.mark.django_db(transaction=True)  # the straggler thread has its own connection
TIMEOUT = 3.0


class BlackHole:
    """Accepts connections and never reads or answers them."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.accepted: list[socket.socket] = []
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"

    def _accept(self) -> None:
        try:
            while True:
                self.accepted.append(self.listener.accept()[0])
        except OSError:  # closed by __exit__
            pass

    def __enter__(self) -> BlackHole:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not
        except OSError:
            pass
        self.listener.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def net(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = [ip_network("127.0.0.0/8")]
    settings.WEBHOOK_TIMEOUT_SECONDS = TIMEOUT
    settings.DELIVERY_STRAGGLERS_PER_DESTINATION = 2
    settings.DELIVERY_STRAGGLER_SECONDS = 0.3  # slow after 4 x 0.3 s


def rows_of(endpoint) -> list[int]:
    return list(Delivery.objects.filter(endpoint=endpoint).order_by("pk").values_list("pk", flat=True))


def test_a_black_holed_endpoint_holds_its_own_rows_not_the_batch(net, tenant, other_tenant):
    with BlackHole() as hole, Hook() as hook:
        dead, _ = create_endpoint(tenant=tenant, url=hole.url, event_types=["alert.triggered"])
        live, _ = create_endpoint(tenant=other_tenant, url=hook.url, event_types=["alert.triggered"])
        for i in range(3):
            fire_alert(tenant, title=f"dead {i}")
            fire_alert(other_tenant, title=f"live {i}")
        dead_rows, live_rows = rows_of(dead), rows_of(live)

        started = time.monotonic()
        assert dispatch.process(dead_rows[:2] + live_rows, straggler_wait=0.3) == 5
        assert time.monotonic() - started < TIMEOUT - 0.5  # did not wait out the black hole
        assert len(hook.requests) == 3
        assert set(Delivery.objects.filter(pk__in=live_rows).values_list("state", flat=True)) == {"DELIVERED"}
        # Still claimed: the straggler thread records them when their deadline ends.
        assert set(Delivery.objects.filter(pk__in=dead_rows[:2]).values_list("state", flat=True)) == {"SENDING"}

        # Young stragglers do not hold a destination back (a busy but healthy receiver) ...
        assert dispatch._stragglers().clogged(2, slow_after=1.2) == set()
        time.sleep(1.3 - (time.monotonic() - started))
        # ... slow ones do: at its cap, the endpoint's next row waits, unsent, no attempt counted.
        assert dispatch._stragglers().clogged(2, slow_after=1.2) == {f"endpoint:{dead.pk}"}
        assert dispatch.process(dead_rows[2:], straggler_wait=0.3) == 0
        waiting = Delivery.objects.get(pk=dead_rows[2])
        assert (waiting.state, waiting.attempts, waiting.claim_token) == ("PENDING", 0, "")
        # Another tenant's row is not held up by it.
        fire_alert(other_tenant, title="live again")
        assert dispatch.process(rows_of(live)[3:], straggler_wait=0.3) == 1
        assert len(hook.requests) == 4

        assert stragglers.drain(TIMEOUT + 10)
        assert len(hole.accepted) == 2
    for pk in dead_rows[:2]:
        row = Delivery.objects.get(pk=pk)
        assert (row.state, row.attempts, row.claim_token) == ("PENDING", 1, "")
        [attempt] = DeliveryAttempt.objects.filter(delivery_id=pk)
        assert not attempt.success and attempt.latency_ms >= (TIMEOUT - 0.5) * 1000
    assert dispatch._stragglers().held(f"endpoint:{dead.pk}") == 0


def test_without_a_wait_every_send_is_recorded_before_returning(net, tenant):
    with BlackHole() as hole:
        dead, _ = create_endpoint(tenant=tenant, url=hole.url, event_types=["alert.triggered"])
        fire_alert(tenant)
        fire_alert(tenant)
        started = time.monotonic()
        assert dispatch.process(rows_of(dead)) == 2
        assert time.monotonic() - started >= TIMEOUT - 0.5
    assert set(Delivery.objects.filter(endpoint=dead).values_list("attempts", flat=True)) == {1}
    assert DeliveryAttempt.objects.filter(success=False).count() == 2


def test_many_young_stragglers_of_one_destination_also_hold_it_back():
    from concurrent.futures import Future

    held = stragglers.Stragglers(record=lambda outcomes: None)
    sends = [Future() for _ in range(10)]
    now = time.monotonic()
    held.add((f, "endpoint:1", now) for f in sends[:7])
    held.add([(sends[7], "endpoint:2", now - 5)])
    assert held.clogged(2, slow_after=2.0) == set()  # 7 young ones, 1 slow one: below both caps
    held.add([(sends[8], "endpoint:1", now)])
    assert held.clogged(2, slow_after=2.0) == {"endpoint:1"}  # 8 = 4 x 2 of any age
    held.add([(sends[9], "endpoint:2", now - 3)])
    assert held.clogged(2, slow_after=2.0) == {"endpoint:1", "endpoint:2"}  # 2 slow ones
    for f in sends:
        f.set_result(None)
    assert held.drain(5) and held.clogged(1, slow_after=0.0) == set()


def test_sends_to_a_destination_with_a_straggler_running_are_not_waited_for(net, settings, tenant, other_tenant):
    settings.DELIVERY_STRAGGLERS_PER_DESTINATION = 5  # not held back here: only the wait is under test
    with BlackHole() as hole, Hook() as hook:
        dead, _ = create_endpoint(tenant=tenant, url=hole.url, event_types=["alert.triggered"])
        live, _ = create_endpoint(tenant=other_tenant, url=hook.url, event_types=["alert.triggered"])
        fire_alert(tenant, title="first")
        started = time.monotonic()
        assert dispatch.process(rows_of(dead), straggler_wait=0.5) == 1
        assert time.monotonic() - started >= 0.5  # the first silence is waited for once
        fire_alert(tenant, title="second")
        fire_alert(other_tenant, title="live")
        started = time.monotonic()
        assert dispatch.process(rows_of(dead)[1:] + rows_of(live), straggler_wait=2.0) == 2
        assert time.monotonic() - started < 1.5  # not the 2 s wait: the endpoint is a suspect
        assert Delivery.objects.get(endpoint=live).state == "DELIVERED"
        assert dispatch._stragglers().held(f"endpoint:{dead.pk}") == 2
        assert stragglers.drain(TIMEOUT + 10)
    assert set(Delivery.objects.filter(endpoint=dead).values_list("attempts", flat=True)) == {1}


def test_a_destination_whose_sends_just_timed_out_is_not_waited_for_again(net, settings, tenant):
    settings.DELIVERY_STRAGGLERS_PER_DESTINATION = 5  # not held back here: only the wait is under test
    with BlackHole() as hole:
        dead, _ = create_endpoint(tenant=tenant, url=hole.url, event_types=["alert.triggered"])
        fire_alert(tenant, title="first")
        assert dispatch.process(rows_of(dead), straggler_wait=0.5) == 1
        assert stragglers.drain(TIMEOUT + 10)  # its send timed out and was recorded: nothing running
        assert dispatch._stragglers().held(f"endpoint:{dead.pk}") == 0
        # The next batch for it (the sweeper's chunk of its put-back rows, say) does not wait out
        # the whole straggler wait for sends that cannot finish: that send ran 3 s, slow for a
        # 0.75 s wait (4 x 0.75 s), and ended less than 3 s ago.
        fire_alert(tenant, title="second")
        started = time.monotonic()
        assert dispatch.process(rows_of(dead)[1:], straggler_wait=0.75) == 1
        assert time.monotonic() - started < 0.6
        assert stragglers.drain(TIMEOUT + 10)
    assert set(Delivery.objects.filter(endpoint=dead).values_list("attempts", flat=True)) == {1}


def test_a_batch_keeps_at_most_its_cap_of_sends_in_flight_per_destination(net, settings, tenant, other_tenant):
    settings.DELIVERY_CONCURRENCY_PER_DESTINATION = 3
    in_flight = {"busy": 0, "busy_max": 0}
    lock = threading.Lock()
    order: list[str] = []

    def script(n, path, body):
        if path.endswith("/busy"):
            with lock:
                in_flight["busy"] += 1
                in_flight["busy_max"] = max(in_flight["busy_max"], in_flight["busy"])
            time.sleep(0.15)
            with lock:
                in_flight["busy"] -= 1
        order.append(path)
        return 200, {}

    with Hook(script) as hook:
        busy, _ = create_endpoint(tenant=tenant, url=hook.url.replace("/hook", "/busy"), event_types=["alert.triggered"])
        quiet, _ = create_endpoint(tenant=other_tenant, url=hook.url, event_types=["alert.triggered"])
        for i in range(12):
            fire_alert(tenant, title=f"busy {i}")
        fire_alert(other_tenant, title="quiet")
        assert dispatch.process(rows_of(busy) + rows_of(quiet)) == 13
    assert in_flight["busy_max"] == 3  # capped, yet concurrent
    assert order.index("/hook") < 6  # the other destination's row did not queue behind the busy one's
    assert set(Delivery.objects.values_list("state", flat=True)) == {"DELIVERED"}


def _futures(done: int, pending: int, delay: float = 0.0) -> list:
    """``done`` futures finishing after ``delay`` seconds (from a timer thread), ``pending`` never."""
    from concurrent.futures import Future

    futures = [Future() for _ in range(done + pending)]

    def finish() -> None:
        for f in futures[:done]:
            f.set_result(None)
    threading.Timer(delay, finish).start() if delay else finish()
    return futures


@pytest.mark.django_db(transaction=False)
def test_a_batch_whose_rest_is_done_waits_a_short_tail_for_its_silent_sends():
    # 48 of 50 sends done after 0.2 s, two never: the batch waits as long again (0.2 s), not 3 s.
    futures = _futures(done=48, pending=2, delay=0.2)
    started = time.monotonic()
    dispatch._wait_for_batch(futures, 3.0, started)
    assert 0.35 <= time.monotonic() - started < 2.5  # ~0.4 s; far from the 3 s even on a loaded box


@pytest.mark.django_db(transaction=False)
def test_the_tail_is_counted_from_each_send_s_own_start():
    # 48 of 50 sends done after 0.2 s. Two silent ones running since the batch began have had their
    # 0.2 s: the batch does not wait for them at all (a black-holed receiver costs it nothing).
    started = time.monotonic()
    futures = _futures(done=48, pending=2, delay=0.2)
    rest_done: list[float] = []
    futures[47].add_done_callback(lambda _f: rest_done.append(time.monotonic()))
    for f in futures[48:]:
        f.send_started = started
    dispatch._wait_for_batch(futures, 3.0, started)
    # Before, it waited as long again (>= 0.2 s) after the rest were done.
    assert time.monotonic() - rest_done[0] < 0.12
    # Two that began late (queued behind their destination's other sends) get 0.2 s from their start.
    started = time.monotonic()
    futures = _futures(done=48, pending=2, delay=0.2)
    for f in futures[48:]:
        f.send_started = started + 0.15
    dispatch._wait_for_batch(futures, 3.0, started)
    assert 0.33 <= time.monotonic() - started < 2.5


@pytest.mark.django_db(transaction=False)
def test_the_tail_is_at_least_tail_seconds_and_the_wait_never_longer_than_asked():
    futures = _futures(done=45, pending=5)  # all but a tenth done at once: the tail is TAIL_SECONDS
    started = time.monotonic()
    dispatch._wait_for_batch(futures, 3.0, started)
    assert dispatch.TAIL_SECONDS - 0.02 <= time.monotonic() - started < 2.5
    futures = _futures(done=10, pending=10)  # half of them silent: the whole wait, and no longer
    started = time.monotonic()
    dispatch._wait_for_batch(futures, 0.4, started)
    assert 0.38 <= time.monotonic() - started < 2.5


@pytest.mark.django_db(transaction=False)
def test_a_small_batch_waits_the_whole_wait_for_a_silent_send_and_no_wait_when_all_are_done():
    futures = _futures(done=4, pending=1)  # under ten sends: no tail, as before
    started = time.monotonic()
    dispatch._wait_for_batch(futures, 0.4, started)
    assert time.monotonic() - started >= 0.38
    started = time.monotonic()
    dispatch._wait_for_batch(_futures(done=30, pending=0), 3.0, started)
    assert time.monotonic() - started < 0.3


def test_a_send_that_would_outlast_its_claim_is_not_started_but_released(net, settings, tenant):
    # One slow receiver (0.5 s an answer), one send at a time to it, ten rows claimed together: the
    # last ones would start seconds after the claim. Started past lease - timeout - lease/10, a send
    # could still be running when the lease ends, and the sweeper would claim and send that row
    # again. Such rows are released unsent instead (PENDING, no attempt), for a later claim.
    settings.DELIVERY_CONCURRENCY_PER_DESTINATION = 1
    settings.DELIVERY_CLAIM_LEASE_SECONDS = 3
    settings.WEBHOOK_TIMEOUT_SECONDS = 1.0  # start budget (dispatch.start_budget): 3 - 1 - 0.3 = 1.7 s

    def slow(n, path, body):
        time.sleep(0.5)
        return 200, {}

    with Hook(slow) as hook:
        slow_endpoint, _ = create_endpoint(tenant=tenant, url=hook.url, event_types=["alert.triggered"])
        for i in range(10):
            fire_alert(tenant, title=f"slow {i}")
        rows = rows_of(slow_endpoint)
        started = time.monotonic()
        assert dispatch.process(rows, straggler_wait=0.2) == 10
        assert stragglers.drain(10)
        sent = len(hook.requests)
        assert 1 <= sent < 10
        # Every send began within the budget, so each ended (answered or timed out) inside the lease.
        assert max(r["at"] for r in hook.requests) - started < 3 - 1.0
        states = dict(Delivery.objects.filter(pk__in=rows).values_list("pk", "state"))
        delivered = [pk for pk in rows if states[pk] == "DELIVERED"]
        released = [pk for pk in rows if states[pk] != "DELIVERED"]
        assert len(delivered) == sent and len(released) == 10 - sent
        for row in Delivery.objects.filter(pk__in=released):
            assert (row.state, row.attempts, row.claim_token) == ("PENDING", 0, "")
        assert not DeliveryAttempt.objects.filter(delivery_id__in=released).exists()

        # A later claim sends them, each once: no webhook-id arrives twice.
        while released:
            dispatch.process(released, straggler_wait=0.2)
            assert stragglers.drain(10)
            released = list(Delivery.objects.filter(pk__in=released).exclude(state="DELIVERED")
                            .values_list("pk", flat=True))
        assert len(hook.requests) == 10 and len(set(hook.ids())) == 10
    assert set(Delivery.objects.filter(pk__in=rows).values_list("attempts", flat=True)) == {1}


def test_a_send_that_waited_too_long_for_a_send_thread_is_released_too(net, settings, tenant, monkeypatch):
    # Ten endpoints, one alert: ten first sends, but one send thread. Those it reaches after the
    # start budget are released as above; none is sent past its claim's lease.
    settings.DELIVERY_CLAIM_LEASE_SECONDS = 3
    settings.WEBHOOK_TIMEOUT_SECONDS = 1.0
    monkeypatch.setattr(dispatch, "_pool", (os.getpid(), dispatch.SendThreads(1)))

    def slow(n, path, body):
        time.sleep(0.5)
        return 200, {}

    with Hook(slow) as hook:
        for i in range(10):
            create_endpoint(tenant=tenant, url=f"{hook.url}/{i}", event_types=["alert.triggered"])
        fire_alert(tenant)
        rows = list(Delivery.objects.order_by("pk").values_list("pk", flat=True))
        assert len(rows) == 10
        started = time.monotonic()
        dispatch.process(rows, straggler_wait=0.2)
        assert stragglers.drain(10)
        sent = len(hook.requests)
        assert 1 <= sent < 10
        assert max(r["at"] for r in hook.requests) - started < 3 - 1.0
    assert Delivery.objects.filter(state="DELIVERED").count() == sent
    assert Delivery.objects.filter(state="PENDING", attempts=0, claim_token="").count() == 10 - sent
    assert DeliveryAttempt.objects.count() == sent
