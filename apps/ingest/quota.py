"""Per-tenant intake quota: a counter per tenant per fixed window (``apps.core.ratelimit``).

The limit is ``INGEST_TENANT_EVENTS_PER_SECOND`` averaged over ``WINDOW_SECONDS``, so short
bursts pass. Only accepted events count. Failure policy: fail open. The quota protects the
pipeline from one noisy tenant; a cache outage must not stop everybody's logs, so cache errors
are logged and the events are let through.
"""
from __future__ import annotations

import logging

from django.conf import settings

from apps.core import ratelimit

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 10


def _window() -> tuple[int, int]:
    """(window number, seconds until it ends)."""
    window = ratelimit.current_window(WINDOW_SECONDS)
    return window.number, window.retry_after


def _key(tenant: str) -> str:
    return f"ingest:quota:{tenant}"


def _limit() -> int:
    return settings.INGEST_TENANT_EVENTS_PER_SECOND * WINDOW_SECONDS


def _add(counts: dict[str, int], window: ratelimit.Window) -> dict[str, int]:
    totals = ratelimit.add({_key(t): n for t, n in counts.items()}, seconds=WINDOW_SECONDS, window=window)
    return {t: totals[_key(t)] for t in counts}


def retry_after_if_exhausted(tenant: str) -> int | None:
    """Seconds to wait if ``tenant`` has already used up this window, else None (cheap pre-check)."""
    window = ratelimit.Window(*_window())
    try:
        used = ratelimit.read(_key(tenant), seconds=WINDOW_SECONDS, window=window)
    except Exception:
        logger.warning("ingest quota check failed; letting events through", exc_info=True)
        return None
    return window.retry_after if used >= _limit() else None


def consume(counts: dict[str, int]) -> int | None:
    """Count ``counts`` (tenant slug -> accepted events) against the quota.

    Returns None when every tenant stays within its limit. Otherwise nothing is counted (the
    increments are undone, since the request will be refused) and the number of seconds until
    the window ends is returned, for ``Retry-After``.
    """
    if not counts:
        return None
    window = ratelimit.Window(*_window())
    try:
        totals = _add(counts, window)
        if all(total <= _limit() for total in totals.values()):
            return None
        _add({t: -n for t, n in counts.items()}, window)
    except Exception:
        logger.warning("ingest quota update failed; letting events through", exc_info=True)
        return None
    return window.retry_after


def refund(counts: dict[str, int]) -> None:
    """Give back events counted by ``consume`` for a request that then failed (e.g. 503)."""
    if not counts:
        return
    try:
        _add({t: -n for t, n in counts.items()}, ratelimit.Window(*_window()))
    except Exception:
        logger.warning("ingest quota refund failed", exc_info=True)
