"""``dispatch.SendThreads``: the send pool runs every queued call, on at most ``size`` threads,
reuses idle ones, survives a call that raises, and runs a call itself when no thread can start."""
from __future__ import annotations

import threading
import time

import pytest

from apps.delivery.dispatch import SendThreads


def wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


def test_runs_every_call_on_at_most_size_threads():
    pool = SendThreads(3)
    gate, lock = threading.Event(), threading.Lock()
    running, peak, done = [0], [0], []

    def call(i):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        gate.wait(5)
        with lock:
            running[0] -= 1
            done.append(i)

    for i in range(10):
        pool.run(call, i)
    wait_for(lambda: running[0] == 3)
    time.sleep(0.05)
    assert (running[0], done) == (3, [])  # the other 7 wait in the queue, no fourth thread
    gate.set()
    wait_for(lambda: len(done) == 10)
    assert peak[0] == 3 and sorted(done) == list(range(10))


def test_an_idle_thread_takes_the_next_call_instead_of_a_new_thread():
    pool = SendThreads(5)
    names = []
    for _ in range(6):  # one at a time, each finished before the next
        finished = threading.Event()
        pool.run(lambda: (names.append(threading.current_thread().name), finished.set()))
        assert finished.wait(5)
        time.sleep(0.01)  # the thread is back waiting for work
    assert len(set(names)) == 1


@pytest.mark.parametrize("error", [RuntimeError("bug"), SystemExit(3)])
def test_a_call_that_raises_costs_that_call_only(caplog, error):
    pool = SendThreads(1)
    done = threading.Event()

    def boom():
        raise error

    pool.run(boom)
    pool.run(done.set)
    assert done.wait(5)  # the one thread lives on
    assert "send thread call failed" in caplog.text


def test_with_no_thread_to_be_had_the_call_runs_on_the_callers_thread(monkeypatch):
    pool = SendThreads(2)

    def refuse(self):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    ran_on = []
    pool.run(lambda: ran_on.append(threading.current_thread()))
    assert ran_on == [threading.current_thread()]
    monkeypatch.undo()  # threads can start again: the failed start was not counted
    done = threading.Event()
    pool.run(done.set)
    assert done.wait(5)
    assert pool._threads == 1
