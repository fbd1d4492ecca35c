"""Slow down token guessing: failed bearer-token attempts are counted per client address in the
shared cache; past ``AUTH_FAILURES_PER_MINUTE`` in a minute the address gets 429 (with
Retry-After) for the rest of that minute, before any token lookup.

Fails open: if the cache is down, authentication still works (and is logged), because locking
every shipper out is worse than a slower attacker.
"""
from __future__ import annotations

import logging
import time

from django.conf import settings
from django.core.cache import cache

log = logging.getLogger(__name__)
WINDOW_SECONDS = 60


def _key(client: str, window: int) -> str:
    return f"authfail:{client}:{window}"


def retry_after(client: str) -> int | None:
    """Seconds the address must wait, or None when it may try."""
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    try:
        failures = cache.get(_key(client, window), 0)
    except Exception:  # cache down: fail open
        log.warning("auth throttle: cache unavailable", exc_info=True)
        return None
    if failures >= settings.AUTH_FAILURES_PER_MINUTE:
        return max(1, int((window + 1) * WINDOW_SECONDS - now))
    return None


def record_failure(client: str) -> None:
    key = _key(client, int(time.time() // WINDOW_SECONDS))
    try:
        if not cache.add(key, 1, timeout=WINDOW_SECONDS * 2):
            cache.incr(key)
    except Exception:
        log.warning("auth throttle: cache unavailable", exc_info=True)
    log.info("auth: bad token", extra={"client": client})
