"""Slow down API token guessing without letting anyone aim the throttle at somebody else.

Only failures are counted, and only after the token was checked: a valid token always
authenticates, whatever other clients did from the same address or with the same prefix. Two
budgets per minute, each answered 429 (with Retry-After) once spent:

- per presented token prefix (the ``ac_<prefix>_`` part): ``AUTH_FAILURES_PER_MINUTE``; a client
  stuck on a revoked or mistyped token backs off, and guessing one token's secret is slowed;
- per client address (``apps.core.client_ip``), whatever the prefix:
  ``AUTH_FAILURES_PER_ADDRESS_PER_MINUTE``, much higher because one address may carry many clients.

Fails open (``apps.core.ratelimit``): with the cache down, failures answer 401 as usual.
"""
from __future__ import annotations

import logging
import re

from django.conf import settings

from . import ratelimit

log = logging.getLogger(__name__)
WINDOW_SECONDS = 60
_PREFIX = re.compile(r"ac_([0-9a-f]{8,32})_")


def token_prefix(plain: str) -> str | None:
    """The lookup prefix of a presented token, or None when it does not look like one of ours."""
    found = _PREFIX.match(plain)
    return found.group(1) if found else None


def record_failure(*, plain: str, address: str) -> int | None:
    """Count one failed attempt; the seconds to wait when a budget is now spent, else None."""
    prefix = token_prefix(plain)
    log.info("auth: bad token", extra={"client": address, "token_prefix": prefix or ""})
    budgets = [(f"authfail:addr:{address}", settings.AUTH_FAILURES_PER_ADDRESS_PER_MINUTE)]
    if prefix:  # garbage tokens share no prefix: they only count against the address
        budgets.append((f"authfail:prefix:{prefix}", settings.AUTH_FAILURES_PER_MINUTE))
    waits = []
    for key, limit in budgets:
        decision = ratelimit.hit(key, limit=limit, seconds=WINDOW_SECONDS)
        if not decision.allowed:
            waits.append(decision.retry_after)
    return max(waits) if waits else None


def refusal_message(wait: int) -> str:
    """The 429's message (the API's and the stream's), e.g. '...; check the token and retry after 36 seconds'."""
    return f"too many failed token attempts; check the token and retry after {wait} second{'' if wait == 1 else 's'}"
