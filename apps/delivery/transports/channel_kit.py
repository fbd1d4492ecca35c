"""What the chat and paging transports (slack, teams, pagerduty, opsgenie) share: the stored request,
one SSRF-checked JSON POST with a total deadline, and the HTTP failure policy.

Failure policy (each vendor module decides what counts as success first): a redirect is not followed
and is transient (the channel's URL can be fixed, pending retries then go out); 408 and 429 are
transient, 429 with ``Retry-After`` or ``DEFAULT_RATE_LIMIT_WAIT``; any other 4xx is permanent (the
vendor refused this request or these credentials: resending the same bytes cannot help); 5xx and
every network failure are transient. Messages name the vendor and host, never the URL, whose path or
query is the secret of a chat webhook.
"""
from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NoReturn

import orjson
import requests

from apps.delivery.backoff import parse_retry_after
from apps.delivery.deadline import Deadline
from apps.delivery.http import post_pinned
from apps.delivery.ssrf import Resolver, UnsafeURL, check_url
from apps.delivery.transports.base import (
    AttemptResult,
    Stopwatch,
    TransportError,
    excerpt,
)
from apps.delivery.transports.webhook import WebhookConfig

# PagerDuty suggests 30 s between retries after a 429 (Events API rate limits page); the other
# vendors name no figure, and their limits are per second to per minute, so the same wait fits.
DEFAULT_RATE_LIMIT_WAIT = 30.0


@dataclass(frozen=True)
class ChannelRequest:
    """What to send for one notification on one channel, WITHOUT secrets (it is stored in the delivery
    row's body in clear): ``path`` is appended to the channel's base URL ("" for chat webhooks),
    ``payload`` is the JSON body minus secret fields (the transport adds e.g. PagerDuty's routing_key)."""

    path: str
    payload: dict

    def encode(self) -> bytes:
        """Compact JSON ``{"path", "payload"}`` for ``Delivery.body``."""
        return orjson.dumps({"path": self.path, "payload": self.payload})

    @classmethod
    def decode(cls, body: bytes | memoryview) -> ChannelRequest:
        """The inverse of ``encode``; ``ValueError`` naming what is missing for anything else."""
        try:
            data = orjson.loads(bytes(body))
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"channel request is not JSON: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("path"), str) or not isinstance(data.get("payload"), dict):
            raise ValueError('channel request needs {"path": str, "payload": object}')
        return cls(path=data["path"], payload=data["payload"])


@dataclass(frozen=True)
class Reply:
    """A vendor's HTTP answer: status, headers, at most ``DELIVERY_MAX_RESPONSE_BYTES`` of body."""

    status: int
    headers: Mapping[str, str]
    content: bytes
    latency_ms: int
    where: str  # "Slack (hooks.slack.com)": for messages, never the secret URL

    @property
    def text(self) -> str:
        return excerpt(self.content)

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        try:
            return orjson.loads(self.content)
        except orjson.JSONDecodeError:
            return None

    def success(self) -> AttemptResult:
        return AttemptResult(status_code=self.status, latency_ms=self.latency_ms, response_excerpt=self.text)

    def fail(self, message: str, *, permanent: bool = False, retry_after: float | None = None) -> NoReturn:
        raise TransportError(message, permanent=permanent, status_code=self.status, retry_after=retry_after,
                             response_excerpt=self.text, latency_ms=self.latency_ms)

    def retry_after(self, default: float | None = None) -> float | None:
        parsed = parse_retry_after(self.headers.get("Retry-After"), datetime.now(timezone.utc))
        return default if parsed is None else parsed


def check_base_url(url: str, *, resolver: Resolver = socket.getaddrinfo) -> str:
    """``url`` stripped, or ``ValueError`` with the SSRF guard's reason (same policy as webhooks)."""
    url = (url or "").strip()
    cfg = WebhookConfig.from_settings()
    try:
        check_url(url, allowed_networks=cfg.allowed_networks, allow_http=cfg.allow_http, resolver=resolver)
    except UnsafeURL as exc:
        raise ValueError(exc.message) from None
    return url


def post_json(url: str, payload: dict, *, vendor: str, timeout: float, headers: Mapping[str, str] | None = None,
              resolver: Resolver = socket.getaddrinfo, keep_alive: bool = False) -> Reply:
    """One POST of ``payload`` as JSON to ``url`` within ``timeout`` seconds in total (DNS check
    included). Returns the ``Reply`` whatever its status; raises ``TransportError`` when no answer
    came (refused URL: permanent unless the name did not resolve; network failures: transient).
    ``keep_alive``: reuse this thread's connection to the vendor's address (a TLS handshake saved per
    message to the real HTTPS APIs)."""
    cfg = WebhookConfig.from_settings()
    watch = Stopwatch()
    deadline = Deadline(timeout)
    try:
        target = check_url(url, allowed_networks=cfg.allowed_networks, allow_http=cfg.allow_http, resolver=resolver)
    except UnsafeURL as exc:
        raise TransportError(f"{vendor} URL refused: {exc.message}", permanent=not exc.transient,
                             latency_ms=watch.ms()) from exc
    where = f"{vendor} ({target.host})"
    send_headers = {"Content-Type": "application/json", **(headers or {})}
    try:
        resp = post_pinned(target, url, body=orjson.dumps(payload), headers=send_headers, timeout=timeout,
                           deadline=deadline, verify=cfg.verify, max_body=cfg.max_response_bytes,
                           keep_alive=keep_alive)
    except requests.ConnectTimeout as exc:
        raise TransportError(f"timed out after {timeout:g} s connecting to {where}", latency_ms=watch.ms()) from exc
    except requests.ReadTimeout as exc:
        raise TransportError(f"no response from {where} within {timeout:g} s", latency_ms=watch.ms()) from exc
    except requests.exceptions.SSLError as exc:
        raise TransportError(f"TLS error with {where}", latency_ms=watch.ms()) from exc
    except requests.RequestException as exc:
        # The exception text can carry the pinned URL with its secret path: name the class only.
        raise TransportError(f"connection to {where} failed ({type(exc).__name__})", latency_ms=watch.ms()) from exc
    return Reply(status=resp.status_code, headers=resp.headers, content=resp.content, latency_ms=watch.ms(),
                 where=where)


def fail_http(reply: Reply, detail: str = "") -> NoReturn:
    """Raise the ``TransportError`` the module's failure policy gives a non-success ``reply``."""
    code = reply.status
    said = f"HTTP {code} from {reply.where}" + (f": {detail}" if detail else "")
    if 300 <= code < 400:
        location = (reply.headers.get("Location") or "(no Location)").split("?")[0][:200]
        reply.fail(f"{said}; redirect to {location} not followed, configure the final URL")
    if code == 429:
        reply.fail(f"{said} (rate limited)", retry_after=reply.retry_after(DEFAULT_RATE_LIMIT_WAIT))
    if code == 408:
        reply.fail(said)
    if 400 <= code < 500:
        reply.fail(said, permanent=True)
    reply.fail(said, retry_after=reply.retry_after())


def cut(text: str, limit: int) -> str:
    """``text`` at most ``limit`` characters, ending in "…" when cut."""
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def required(config: Mapping[str, str], key: str, kind: str) -> str:
    """A config value the send cannot do without; a missing one is permanent (fix the channel)."""
    value = (config.get(key) or "").strip()
    if not value:
        raise TransportError(f"{kind} channel has no {key}", permanent=True, latency_ms=0)
    return value
