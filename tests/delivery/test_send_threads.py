"""``dispatch.SendThreads``: the send pool runs every queued call, on at most ``size`` threads,
reuses idle ones, and survives a call that raises."""
from __future__ import annotations

import threading
import time

from apps.delivery.dispatch import SendThreads


def test_runs_every_call_on_at_most_size_threads_and_reuses_them():
    pool = SendThreads(3)
    gate, lock = threading.Event(), threading.Lock()
    running, peak, done, names = [0], [0], [], set()

    def call(i):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            names.add(threading.current_thread().name)
        gate.wait(5)
        with lock:
            running[0] -= 1
            done.append(i)

    for i in range(10):
        pool.run(call, i)
    time.sleep(0.2)
    assert peak[0] == 3  # the other 7 wait in the queue
    gate.set()
    deadline = time.monotonic() + 5
    while len(done) < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(done) == list(range(10))
    for i in range(10, 15):  # idle threads take new calls: no fourth thread
        pool.run(call, i)
    while len(done) < 15 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(done) == 15 and len(names) == 3


def test_a_call_that_raises_costs_that_call_only(caplog):
    pool = SendThreads(1)
    done = threading.Event()

    def boom():
        raise RuntimeError("bug")

    pool.run(boom)
    pool.run(done.set)
    assert done.wait(5)
    assert "send thread call failed" in caplog.text
