"""Sends still running when their batch is recorded: recorded later by one thread per process, so a
receiver that never answers holds its own rows, not the worker.

A deliver task waits ``DELIVERY_STRAGGLER_SECONDS`` for its batch's sends (less once all but a
tenth are done: ``dispatch.TAIL_SECONDS``), records those that finished and hands the rest here;
the task returns and the worker takes the next batch while the stragglers run out their own
deadline (``WEBHOOK_TIMEOUT_SECONDS`` / ``CHANNEL_TIMEOUT_SECONDS``).
Their rows stay claimed (SENDING, the batch's claim token) until this thread records them, within
the claim lease (a send that could end past it is not started: ``dispatch.start_budget``); if the
process dies first, the lease ends and the sweeper sends them again (at-least-once, as for any send
cut short).

Per destination (a webhook endpoint, a channel, or the email/SMS provider) a process holds at most
``DELIVERY_STRAGGLERS_PER_DESTINATION`` *slow* stragglers (running for longer than ``SLOW_FACTOR``
times the wait): ``clogged`` names the destinations at that cap, whose new rows the dispatcher puts
back to wait a little instead of sending, so one black-holed endpoint costs its own tenant's rows a
timeout each and nobody else anything. Stragglers younger than that do not count: under a storm a
healthy receiver on a busy machine can take longer than the wait, and must not be held back.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, wait

from django.db import close_old_connections, connection

logger = logging.getLogger("apps.delivery")

POLL_SECONDS = 0.05
GATHER_SECONDS = 0.02
IDLE_CLOSE_SECONDS = 10.0
SLOW_FACTOR = 4  # a straggler counts as slow after 4 x DELIVERY_STRAGGLER_SECONDS (2 s by default)


class Stragglers:
    """One process's stragglers and the thread that records them (``record`` takes a list of outcomes)."""

    def __init__(self, record: Callable[[list], None]) -> None:
        self._record = record
        self._lock = threading.Condition()
        self._waiting: dict[Future, tuple[str, float]] = {}  # future -> (destination, monotonic start)
        self._held: dict[str, int] = {}
        # destination -> (monotonic end, seconds it ran) of its last straggler to end: one that ran
        # long (a receiver gone silent) leaves its destination a suspect for as long again.
        self._ended: dict[str, tuple[float, float]] = {}
        self._close_asked = False
        self._thread = threading.Thread(target=self._run, name="deliver-stragglers", daemon=True)
        self._thread.start()

    def add(self, futures: Iterable[tuple[Future, str, float | None]]) -> None:
        """Take over these sends (future of an ``Outcome``, destination key, monotonic start or None)."""
        now = time.monotonic()
        with self._lock:
            for future, key, started in futures:
                self._waiting[future] = (key, started if started is not None else now)
                self._held[key] = self._held.get(key, 0) + 1
            self._lock.notify_all()

    def suspects(self, slow_after: float = float("inf")) -> set[str]:
        """Destinations with a straggler still running, or whose last straggler ran ``slow_after``
        seconds or more and ended less than that long ago: a batch does not wait for its sends to
        them. Without the second, the first batch for a silent receiver after its sends timed out
        (the sweeper's chunk of its put-back rows, say) waited out the whole straggler wait for
        sends none of which could finish, a worker process idle each time."""
        now = time.monotonic()
        with self._lock:
            recent = {key for key, (ended, ran) in self._ended.items() if ran >= slow_after and now < ended + ran}
            return set(self._held) | recent

    def held(self, key: str) -> int:
        with self._lock:
            return self._held.get(key, 0)

    def clogged(self, limit: int, slow_after: float) -> set[str]:
        """Destinations holding ``limit`` or more stragglers running for ``slow_after`` seconds or more,
        or ``SLOW_FACTOR`` times ``limit`` of any age (a receiver just gone silent, sent to faster
        than its stragglers grow old: each one holds a send thread)."""
        now = time.monotonic()
        slow: dict[str, int] = {}
        total: dict[str, int] = {}
        with self._lock:
            for key, started in self._waiting.values():
                total[key] = total.get(key, 0) + 1
                if now - started >= slow_after:
                    slow[key] = slow.get(key, 0) + 1
        return {key for key, n in slow.items() if n >= limit} | {
            key for key, n in total.items() if n >= SLOW_FACTOR * limit}

    def drain(self, timeout: float) -> bool:
        """Wait until every straggler is recorded (worker shutdown, tests); False on timeout."""
        end = time.monotonic() + timeout
        with self._lock:
            while self._waiting or self._held:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, POLL_SECONDS))
            self._close_asked = True  # and let the thread close its connection now
            self._lock.notify_all()
            while self._close_asked and time.monotonic() < end:
                self._lock.wait(POLL_SECONDS)
        return True

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._waiting:
                    woken = self._lock.wait(IDLE_CLOSE_SECONDS)
                    if (not woken or self._close_asked) and not self._waiting:
                        connection.close()  # stragglers are the exception: no connection kept idle
                        self._close_asked = False
                        self._lock.notify_all()
                pending = list(self._waiting)
            done, _ = wait(pending, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
            if not done:
                continue
            time.sleep(GATHER_SECONDS)  # record what finishes together in one transaction
            done = [f for f in pending if f.done()]
            ended = time.monotonic()
            with self._lock:
                keys = []
                for f in done:
                    key, _started = self._waiting.pop(f)
                    keys.append(key)
                    # The send's own duration (``dispatch._submit`` dates it), not since its batch
                    # began: a healthy send that merely waited to be recorded is not slow.
                    ran = getattr(f, "send_ended", 0.0) - getattr(f, "send_started", 0.0)
                    self._ended[key] = (ended, ran)
                self._ended = {k: v for k, v in self._ended.items() if ended < v[0] + v[1]}  # the expired go
            try:
                close_old_connections()
                self._record([f.result() for f in done])  # send() never raises: a result each
            except Exception:  # noqa: BLE001 - the rows stay claimed; the lease and sweeper recover them
                logger.exception("recording late outcomes failed; the sweeper retries after the lease",
                                 extra={"count": len(done)})
            finally:
                with self._lock:
                    for key in keys:
                        self._held[key] -= 1
                        if not self._held[key]:
                            del self._held[key]
                    self._lock.notify_all()


_instance: tuple[int, Stragglers] | None = None


def for_process(record: Callable[[list], None]) -> Stragglers:
    """This process's instance (made after a prefork fork: threads do not survive fork)."""
    global _instance
    if _instance is None or _instance[0] != os.getpid():
        _instance = (os.getpid(), Stragglers(record))
    return _instance[1]


def drain(timeout: float) -> bool:
    """Wait for this process's stragglers, if it has any (``worker_process_shutdown``)."""
    if _instance is None or _instance[0] != os.getpid():
        return True
    return _instance[1].drain(timeout)
