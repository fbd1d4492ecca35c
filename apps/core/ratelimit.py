"""The one rate-limit counter: fixed windows over Django's cache (Redis in production), shared by
every web process.

A window of ``seconds`` is numbered ``floor(now / seconds)``; its count lives under one cache key
that expires after two windows, so nothing needs cleaning up. Time comes from
``apps.core.clock`` so every process (and a test that moves the clock) agrees on the window.

Failure policy: ``hit`` and ``peek`` fail open. A limit protects against abuse; a cache outage must
not lock every client out, so cache errors are logged and the request is allowed. ``add`` and
``read`` are the raw operations and raise, for callers with their own policy.
"""
from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass

from django.core.cache import cache

from . import clock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Window:
    number: int
    retry_after: int  # whole seconds until the window ends, at least 1


@dataclass(frozen=True)
class Decision:
    allowed: bool
    count: int
    retry_after: int  # seconds until the count resets; meaningful when not allowed


def current_window(seconds: int) -> Window:
    now = clock.now().timestamp()
    number = int(now // seconds)
    return Window(number, max(1, math.ceil((number + 1) * seconds - now)))


def _cache_key(key: str, seconds: int, number: int) -> str:
    return f"rl:{key}:{seconds}:{number}"


_held = threading.local()


def _redis():
    # Django's RedisCache: INCRBY + EXPIRE per key in one script call instead of add() + incr().
    # Django builds a new redis-py client on its connection pool at every call (~0.1 ms of CPU, 1 %
    # of the intake's web process in bench/ingest.py): keep the one built for this thread's cache.
    inner = getattr(cache, "_cache", None)
    if not hasattr(inner, "get_client"):
        return None
    held = getattr(_held, "pair", None)
    if held is None or held[0] is not inner:
        held = _held.pair = (inner, inner.get_client(write=True))
    return held[1]


# One command however many keys: a platform token's log batch spans up to its 50 tenants, and a
# pipeline of 100 commands cost the intake ~2 ms of Python per request to pack and parse.
_ADD_SCRIPT = """
local ttl = ARGV[#ARGV]
local totals = {}
for i, key in ipairs(KEYS) do
  totals[i] = redis.call('INCRBY', key, ARGV[i])
  redis.call('EXPIRE', key, ttl)
end
return totals
"""
_script = None  # redis-py's Script: EVALSHA, loading the script on the server when it is missing


def _add_script(client):
    global _script
    if _script is None:
        _script = client.register_script(_ADD_SCRIPT)
    return _script


def add(amounts: dict[str, int], *, seconds: int, window: Window | None = None) -> dict[str, int]:
    """Add ``amounts`` (key -> n, n may be negative to give back) to the window's counts and return
    the new totals. Raises on cache errors."""
    if not amounts:
        return {}
    window = window or current_window(seconds)
    ttl = seconds * 2
    keys = {name: _cache_key(name, seconds, window.number) for name in amounts}
    client = _redis()
    if client is not None:
        raw = [cache.make_key(keys[name]) for name in amounts]
        totals = _add_script(client)(keys=raw, args=[*amounts.values(), ttl], client=client)
        return {name: int(total) for name, total in zip(amounts, totals)}
    totals = {}
    for name, n in amounts.items():
        cache.add(keys[name], 0, ttl)
        totals[name] = cache.incr(keys[name], n)
    return totals


def read(key: str, *, seconds: int, window: Window | None = None) -> int:
    """The window's count for ``key`` (0 when none). Raises on cache errors."""
    window = window or current_window(seconds)
    return int(cache.get(_cache_key(key, seconds, window.number)) or 0)


def hit(key: str, *, limit: int, seconds: int, amount: int = 1) -> Decision:
    """Count ``amount`` against ``key`` and say whether the window's total is still within ``limit``."""
    window = current_window(seconds)
    try:
        count = add({key: amount}, seconds=seconds, window=window)[key]
    except Exception:
        log.warning("rate limit: cache unavailable; allowing", exc_info=True, extra={"key": key})
        return Decision(True, 0, 0)
    return Decision(count <= limit, count, window.retry_after)


def peek(key: str, *, limit: int, seconds: int) -> Decision:
    """Like ``hit`` without counting: is ``key`` already over ``limit`` in this window?"""
    window = current_window(seconds)
    try:
        count = read(key, seconds=seconds, window=window)
    except Exception:
        log.warning("rate limit: cache unavailable; allowing", exc_info=True, extra={"key": key})
        return Decision(True, 0, 0)
    return Decision(count < limit, count, window.retry_after)


def clear(key: str, *, seconds: int) -> None:
    """Forget ``key``'s count in the current window (e.g. after a successful sign-in)."""
    try:
        cache.delete(_cache_key(key, seconds, current_window(seconds).number))
    except Exception:
        log.warning("rate limit: cache unavailable; count not cleared", exc_info=True, extra={"key": key})
