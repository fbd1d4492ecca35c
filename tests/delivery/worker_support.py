"""Integration harness: a real Celery worker on the test database and Redis, local peers, and the
sweeper run in a thread of the test process (``dispatch.sweep`` is exactly what beat's
``deliver.sweep`` task calls; a thread ticks faster than beat so timing assertions stay tight)."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from django.db import connection

from apps.delivery import dispatch


@contextmanager
def sweeper(interval: float = 0.2) -> Iterator[None]:
    stop = threading.Event()

    def loop() -> None:
        try:
            while not stop.wait(interval):
                dispatch.sweep()
        finally:
            connection.close()  # this thread's own connection

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(timeout=5)


def worker_env(smtp, sms, **extra: str) -> dict[str, str]:
    from tests.delivery.peers import peer_env

    return peer_env(smtp, sms, DELIVERY_RETRY_SCHEDULE="1,1,1", DELIVERY_MAX_AGE_SECONDS="600", **extra)
