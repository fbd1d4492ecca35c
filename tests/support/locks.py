"""Row locks held by another transaction, as a concurrent worker would hold them."""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.db import connection, transaction


@contextmanager
def held_elsewhere(lock: Callable[[], object], timeout: float = 20) -> Iterator[None]:
    """Run ``lock`` (e.g. a ``select_for_update`` read) in a transaction on another thread's
    connection and keep that transaction open, its locks held, until the block ends."""
    held, release, errors = threading.Event(), threading.Event(), []

    def hold() -> None:
        try:
            with transaction.atomic():
                lock()
                held.set()
                release.wait(timeout)
        except BaseException as exc:  # surfaced in the caller's thread
            errors.append(exc)
        finally:
            held.set()
            connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert held.wait(timeout) and not errors, errors
        yield
    finally:
        release.set()
        thread.join(timeout)
