"""Login throttling: at most MAX_FAILURES failed sign-ins per (username, client address) per
window, counted in the shared cache so every web process sees the same count."""
from __future__ import annotations

import hashlib

from django.core.cache import cache
from django.http import HttpRequest

from apps.audit.services import record

MAX_FAILURES = 5
WINDOW_SECONDS = 300


def client_ip(request: HttpRequest | None) -> str:
    # REMOTE_ADDR only: X-Forwarded-For is client-controlled unless a trusted proxy rewrites it.
    return (request.META.get("REMOTE_ADDR") or "") if request is not None else ""


def key_for(username: str, ip: str) -> str:
    digest = hashlib.sha256(f"{username.lower()}\x00{ip}".encode()).hexdigest()[:32]
    return f"console:login-failures:{digest}"


def is_blocked(key: str) -> bool:
    return (cache.get(key) or 0) >= MAX_FAILURES


def register_failure(key: str, request: HttpRequest | None, username: str) -> int:
    """Count one failure (the window starts at the first one) and audit it; returns the count."""
    if cache.add(key, 1, WINDOW_SECONDS):
        count = 1
    else:
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, WINDOW_SECONDS)
            count = 1
    record("console.login_failed", actor="anonymous", target_type="auth.user", target_id="",
           data={"username": username[:150], "failures": count}, ip=client_ip(request) or None)
    return count


def audit_throttled(request: HttpRequest | None, username: str) -> None:
    record("console.login_throttled", actor="anonymous", target_type="auth.user",
           data={"username": username[:150]}, ip=client_ip(request) or None)


def reset(username: str, ip: str) -> None:
    cache.delete(key_for(username, ip))
