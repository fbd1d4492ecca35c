"""Total wall-clock deadlines for outgoing connections (HTTP and SMTP).

Why: socket timeouts bound each ``recv``, not the exchange. A receiver that drips one header byte
every few seconds never trips a 10 s read timeout and can hold a worker for minutes. So every
outgoing exchange runs under ``watchdog(deadline)``: each socket opened (or reused) inside it is
registered, and when the deadline passes one shared reaper thread shuts those sockets down. A
blocked ``recv`` then returns at once and the caller sees a connection error, which it reports as a
timeout because ``Watchdog.fired`` is set.

The watchdog keeps a duplicate descriptor of each socket: ``shutdown`` acts on the connection, not on the
descriptor, so it also reaches a socket that TLS wrapping has since detached (urllib3 and smtplib
wrap the plain socket after connecting, which would leave us holding a closed object otherwise).
The dups are closed when the block ends; the connection itself stays usable (keep-alive).
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class Deadline:
    """A point in monotonic time, ``seconds`` from now."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.at - time.monotonic())

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.at


class Watchdog:
    """Sockets to shut down at ``deadline``; see the module docstring."""

    def __init__(self, deadline: Deadline) -> None:
        self.deadline = deadline
        self.fired = False
        self._lock = threading.Lock()
        self._dups: list[socket.socket] = []
        self._closed = False

    def watch(self, sock: socket.socket) -> None:
        """Shut ``sock`` down when the deadline passes (at once if it already has)."""
        # os.dup, not sock.dup(): an SSLSocket refuses dup(), and a plain socket object over the
        # duplicated descriptor is all ``shutdown`` needs.
        dup = socket.socket(sock.family, sock.type, sock.proto, fileno=os.dup(sock.fileno()))
        with self._lock:
            if self._closed:  # the block already ended: nothing to enforce any more
                dup.close()
                return
            self._dups.append(dup)
            if self.fired:
                _shutdown(dup)

    def fire(self) -> None:
        with self._lock:
            if self._closed:
                return
            self.fired = True
            for dup in self._dups:
                _shutdown(dup)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            dups, self._dups = self._dups, []
        for dup in dups:
            dup.close()


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed by the peer or by us: nothing left to stop
        pass


class _Reaper:
    """One daemon thread firing due watchdogs, rather than a timer thread per request."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Watchdog]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, dog: Watchdog) -> None:
        with self._cond:
            heapq.heappush(self._heap, (dog.deadline.at, next(self._seq), dog))
            if self._thread is None or not self._thread.is_alive():  # also after a fork
                self._thread = threading.Thread(target=self._run, name="deadline-reaper", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                at, _, dog = self._heap[0]
                wait = at - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
            dog.fire()  # a no-op for a watchdog whose block already ended


_reaper = _Reaper()
_current: contextvars.ContextVar[Watchdog | None] = contextvars.ContextVar("delivery_watchdog", default=None)


@contextmanager
def watchdog(deadline: Deadline) -> Iterator[Watchdog]:
    """Run the block with ``deadline`` enforced on every socket passed to ``watch_socket``."""
    dog = Watchdog(deadline)
    _reaper.add(dog)
    token = _current.set(dog)
    try:
        yield dog
    finally:
        _current.reset(token)
        dog.close()


def watch_socket(sock: socket.socket | None) -> None:
    """Register ``sock`` with the enclosing ``watchdog`` block, if any (called by connection hooks)."""
    dog = _current.get()
    if dog is not None and sock is not None:
        dog.watch(sock)
