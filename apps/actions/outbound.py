"""One HTTP POST to a tenant-configured URL (tracker or runbook), through the delivery machinery:
the SSRF guard at call time (``check_url``), a connection pinned to the checked address, a total
deadline and a response cap (``post_pinned``). No database access here.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import requests
from django.conf import settings

from apps.core.errors import Unprocessable
from apps.delivery.deadline import Deadline
from apps.delivery.http import post_pinned
from apps.delivery.ssrf import UnsafeURL, check_url
from apps.delivery.transports import WebhookConfig

EXCERPT_CHARS = 500
MAX_RESPONSE_BYTES = 64 * 1024


class CallFailed(Exception):
    """No HTTP answer (refused URL, DNS, connect, TLS, deadline); ``str(exc)`` says which."""

    def __init__(self, message: str, *, latency_ms: int) -> None:
        super().__init__(message)
        self.message = message
        self.latency_ms = latency_ms


@dataclass(frozen=True)
class CallResult:
    status: int
    latency_ms: int
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def excerpt(self) -> str:
        return excerpt(self.body)

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None


def excerpt(body: bytes) -> str:
    """The first EXCERPT_CHARS characters of a response, for the timeline, audit and run record."""
    text = body.decode("utf-8", "replace")
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "…"


def validate_url(url: str, *, field: str = "url") -> str:
    """Refuse (422 naming ``field``) a URL the SSRF guard would refuse at call time."""
    url = (url or "").strip()
    cfg = WebhookConfig.from_settings()
    try:
        check_url(url, allowed_networks=cfg.allowed_networks, allow_http=cfg.allow_http)
    except UnsafeURL as exc:
        raise Unprocessable(f"{field}: {exc.message}", code="unsafe_url", details={field: [exc.message]}) from exc
    return url


def post(url: str, *, body: bytes, headers: dict[str, str]) -> CallResult:
    """POST ``body`` as JSON to ``url``; HTTP error statuses are returned, transport failures raise CallFailed."""
    cfg = WebhookConfig.from_settings()
    timeout = float(settings.ACTIONS_TIMEOUT_SECONDS)
    started = time.monotonic()
    deadline = Deadline(timeout)

    def ms() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        target = check_url(url, allowed_networks=cfg.allowed_networks, allow_http=cfg.allow_http)
    except UnsafeURL as exc:
        raise CallFailed(f"URL refused: {exc.message}", latency_ms=ms()) from exc
    try:
        response = post_pinned(target, url, body=body, headers={"Content-Type": "application/json",
                                                                 "Accept": "application/json", **headers},
                               timeout=timeout, deadline=deadline, max_body=MAX_RESPONSE_BYTES)
    except requests.ReadTimeout as exc:
        raise CallFailed(f"no response from {target.host}:{target.port} within {timeout:g} s", latency_ms=ms()) from exc
    except requests.RequestException as exc:
        reason = exc.args[0] if exc.args else exc
        raise CallFailed(f"{type(exc).__name__} calling {target.host}:{target.port}: {str(reason)[:300]}",
                         latency_ms=ms()) from exc
    return CallResult(status=response.status_code, latency_ms=ms(), body=response.content)
