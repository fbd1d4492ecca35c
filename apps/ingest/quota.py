"""Per-tenant intake quota: a counter per tenant per fixed window in the shared cache (Redis).

The limit is ``INGEST_TENANT_EVENTS_PER_SECOND`` averaged over ``WINDOW_SECONDS``, so short
bursts pass. Only accepted events count. Failure policy: fail open. The quota protects the
pipeline from one noisy tenant; a cache outage must not stop everybody's logs, so cache errors
are logged and the events are let through.
"""
from __future__ import annotations

import logging
import time

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 10


def _window() -> tuple[int, int]:
    """(window number, seconds until it ends)."""
    now = time.time()
    number = int(now // WINDOW_SECONDS)
    return number, max(1, int((number + 1) * WINDOW_SECONDS - now + 0.999))


def _key(tenant: str, window: int) -> str:
    return f"ingest:quota:{tenant}:{window}"


def _limit() -> int:
    return settings.INGEST_TENANT_EVENTS_PER_SECOND * WINDOW_SECONDS


def _redis():
    # Django's RedisCache: one pipelined INCRBY + EXPIRE instead of add() + exists() + incr().
    inner = getattr(cache, "_cache", None)
    return inner.get_client(write=True) if hasattr(inner, "get_client") else None


def _add(counts: dict[str, int], window: int, ttl: int) -> dict[str, int]:
    client = _redis()
    if client is not None:
        pipe = client.pipeline(transaction=False)
        keys = [cache.make_and_validate_key(_key(t, window)) for t in counts]
        for key, n in zip(keys, counts.values()):
            pipe.incrby(key, n)
            pipe.expire(key, ttl)
        results = pipe.execute()
        return dict(zip(counts, results[::2]))
    totals = {}
    for tenant, n in counts.items():
        key = _key(tenant, window)
        cache.add(key, 0, ttl)
        totals[tenant] = cache.incr(key, n)
    return totals


def retry_after_if_exhausted(tenant: str) -> int | None:
    """Seconds to wait if ``tenant`` has already used up this window, else None (cheap pre-check)."""
    window, remaining = _window()
    try:
        used = cache.get(_key(tenant, window)) or 0
    except Exception:
        logger.warning("ingest quota check failed; letting events through", exc_info=True)
        return None
    return remaining if int(used) >= _limit() else None


def consume(counts: dict[str, int]) -> int | None:
    """Count ``counts`` (tenant slug -> accepted events) against the quota.

    Returns None when every tenant stays within its limit. Otherwise nothing is counted (the
    increments are undone, since the request will be refused) and the number of seconds until
    the window ends is returned, for ``Retry-After``.
    """
    if not counts:
        return None
    window, remaining = _window()
    ttl = WINDOW_SECONDS * 2
    try:
        totals = _add(counts, window, ttl)
        if all(total <= _limit() for total in totals.values()):
            return None
        _add({t: -n for t, n in counts.items()}, window, ttl)
    except Exception:
        logger.warning("ingest quota update failed; letting events through", exc_info=True)
        return None
    return remaining


def refund(counts: dict[str, int]) -> None:
    """Give back events counted by ``consume`` for a request that then failed (e.g. 503)."""
    if not counts:
        return
    window, _ = _window()
    try:
        _add({t: -n for t, n in counts.items()}, window, WINDOW_SECONDS * 2)
    except Exception:
        logger.warning("ingest quota refund failed", exc_info=True)
