"""Console sign-in throttling that slows guessing without locking anyone out.

Failures are counted per (username, client address) pair. The first ``FREE_FAILURES - 1`` cost
nothing; from the ``FREE_FAILURES``-th on, that pair must wait before its next try, 2 s doubling per
further failure up to ``MAX_DELAY_SECONDS``. The right password from another address is never
affected, and from the same address it works once the wait is over. Addresses come from
``apps.core.client_ip`` (``TRUSTED_PROXIES``), so clients behind our proxy are told apart.

Audit: every failure for an existing user is one row. Failures for usernames that do not exist are
counted per address per ``UNKNOWN_WINDOW_SECONDS`` and written only when the count reaches 1, 10,
100, ...: random usernames cannot fill the audit table.
"""
from __future__ import annotations

import hashlib
import math

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.http import HttpRequest

from apps.audit.services import record
from apps.core import clock, ratelimit
from apps.core.client_ip import client_ip

FREE_FAILURES = 5
MAX_DELAY_SECONDS = 300
FAILURE_WINDOW_SECONDS = 3600
UNKNOWN_WINDOW_SECONDS = 600


def delay_after(failures: int) -> int:
    """Seconds a pair waits after its ``failures``-th failure in the window (0: no wait)."""
    if failures < FREE_FAILURES:
        return 0
    return min(MAX_DELAY_SECONDS, 2 ** (failures - FREE_FAILURES + 1))


def _pair(username: str, ip: str) -> str:
    return hashlib.sha256(f"{username.lower()}\x00{ip}".encode()).hexdigest()[:32]


def _wait_key(username: str, ip: str) -> str:
    return f"console:login-wait:{_pair(username, ip)}"


def wait_seconds(username: str, ip: str) -> int:
    """Seconds this pair must still wait before its password is even checked (0: may try)."""
    try:
        until = cache.get(_wait_key(username, ip))
    except Exception:  # cache down: fail open, like every limit (apps.core.ratelimit)
        return 0
    if until is None:
        return 0
    return max(0, math.ceil(float(until) - clock.now().timestamp()))


def _user_exists(username: str) -> bool:
    User = get_user_model()
    return User._default_manager.filter(**{User.USERNAME_FIELD: username}).exists()


def register_failure(request: HttpRequest | None, username: str) -> int:
    """Count one failed sign-in, audit it (boundedly for unknown usernames) and return the seconds
    the pair must now wait (0: none)."""
    ip = client_ip(request)
    failures = ratelimit.hit(f"console:login-fail:{_pair(username, ip)}", limit=FREE_FAILURES,
                             seconds=FAILURE_WINDOW_SECONDS).count
    wait = delay_after(failures)
    if wait:
        try:
            cache.set(_wait_key(username, ip), clock.now().timestamp() + wait, wait + 60)
        except Exception:
            pass  # fail open: the failure is still audited below
    if _user_exists(username):
        record("console.login_failed", actor="anonymous", target_type="auth.user", target_id="",
               data={"username": username[:150], "failures": failures, "wait_seconds": wait}, ip=ip or None)
    else:
        _count_unknown_username(ip, username)
    return wait


def _count_unknown_username(ip: str, username: str) -> None:
    seen = ratelimit.hit(f"console:login-unknown:{ip}", limit=0, seconds=UNKNOWN_WINDOW_SECONDS).count
    if seen and str(seen).rstrip("0") == "1":  # 1, 10, 100, ...: a handful of rows per window
        record("console.login_failed_unknown_user", actor="anonymous", target_type="auth.user",
               data={"failures_in_window": seen, "window_seconds": UNKNOWN_WINDOW_SECONDS,
                     "last_username": username[:150]}, ip=ip or None)


def reset(username: str, ip: str) -> None:
    ratelimit.clear(f"console:login-fail:{_pair(username, ip)}", seconds=FAILURE_WINDOW_SECONDS)
    try:
        cache.delete(_wait_key(username, ip))
    except Exception:
        pass  # fail open
