"""Webhook transport: one signed JSON POST to a tenant URL (DESIGN.md section 4).

The caller builds the body and signature headers (``apps.delivery.signing.sign``) and adds
``X-PowerX-Alert-ID``; this module checks the URL against SSRF rules at send time (DNS may have
changed since the URL was saved), posts over a connection pinned to the checked address, and maps
the outcome:

* 2xx success; 3xx failure naming the ``Location`` (never followed);
* 410 permanent (the endpoint is gone: the caller disables it);
* 429/503 transient with ``retry_after`` from ``Retry-After``; other 4xx/5xx transient;
* timeouts, connection and TLS errors transient; a URL refused by the SSRF policy permanent, an
  unresolvable host transient.

``timeout`` (``WEBHOOK_TIMEOUT_SECONDS``) is the total budget of one send, from the DNS check to
the last byte read; at most ``max_response_bytes`` (``DELIVERY_MAX_RESPONSE_BYTES``) are read.
"""

from __future__ import annotations

import functools
import socket
from dataclasses import dataclass
from datetime import datetime, timezone

import requests

from apps.delivery.backoff import parse_retry_after
from apps.delivery.deadline import Deadline
from apps.delivery.http import MAX_RESPONSE_BYTES, post_pinned
from apps.delivery.ssrf import IPNetwork, Resolver, UnsafeURL, check_url, parse_allowed_networks
from apps.delivery.transports.base import (
    AttemptResult,
    OutboundMessage,
    Stopwatch,
    Transport,
    TransportError,
    excerpt,
    register,
    setting,
)

DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True)
class WebhookConfig:
    """SSRF and HTTP options; ``verify`` is True or a CA bundle path."""

    allowed_networks: tuple[IPNetwork, ...] = ()
    allow_http: bool = False
    timeout: float = DEFAULT_TIMEOUT  # total seconds per send
    verify: bool | str = True
    max_response_bytes: int = MAX_RESPONSE_BYTES

    @classmethod
    def from_settings(cls) -> WebhookConfig:
        """Build from ``WEBHOOK_ALLOWED_NETWORKS``, ``WEBHOOK_ALLOW_HTTP``, ``WEBHOOK_TIMEOUT_SECONDS``,
        ``DELIVERY_MAX_RESPONSE_BYTES``."""
        networks = setting("WEBHOOK_ALLOWED_NETWORKS", None)
        return _config(
            networks if networks is None or isinstance(networks, str) else tuple(networks),
            setting("WEBHOOK_ALLOW_HTTP", False), setting("WEBHOOK_TIMEOUT_SECONDS", DEFAULT_TIMEOUT),
            setting("DELIVERY_MAX_RESPONSE_BYTES", MAX_RESPONSE_BYTES),
        )


# Built once per distinct settings (every send reads them; a storm sends thousands a second).
@functools.lru_cache(maxsize=8)
def _config(networks: str | tuple | None, allow_http: object, timeout: object, max_body: object) -> WebhookConfig:
    # Settings hold parsed networks; a raw "a/b,c/d" string (tests, scripts) is accepted too.
    return WebhookConfig(
        allowed_networks=tuple(parse_allowed_networks(networks)), allow_http=bool(allow_http),
        timeout=float(timeout), max_response_bytes=int(max_body),
    )


def _reason(exc: BaseException) -> str:
    """The innermost useful message of a requests/urllib3 exception, shortened for the attempt log."""
    inner: object = exc.args[0] if exc.args else exc
    inner = getattr(inner, "reason", inner) or inner
    return str(inner)[:300]


@register
class WebhookTransport(Transport):
    kind = "webhook"

    def __init__(self, config: WebhookConfig | None = None, resolver: Resolver = socket.getaddrinfo,
                 keep_alive: bool = False) -> None:
        # config=None reads Django settings at send time, so settings changes in tests apply.
        # keep_alive: reuse this thread's connection to the checked address (the deliver workers).
        self.config = config
        self.resolver = resolver
        self.keep_alive = keep_alive

    def send(self, message: OutboundMessage) -> AttemptResult:
        cfg = self.config or WebhookConfig.from_settings()
        watch = Stopwatch()
        deadline = Deadline(cfg.timeout)
        if not message.url:
            raise TransportError("webhook URL is empty", permanent=True, latency_ms=0)
        try:
            target = check_url(
                message.url,
                allowed_networks=cfg.allowed_networks,
                allow_http=cfg.allow_http,
                resolver=self.resolver,
            )
        except UnsafeURL as exc:
            raise TransportError(
                f"URL refused: {exc.message}", permanent=not exc.transient, latency_ms=watch.ms()
            ) from exc

        headers = {"Content-Type": "application/json", **message.headers}
        where = f"{target.host}:{target.port}"
        try:
            resp = post_pinned(
                target, message.url, body=message.body, headers=headers, timeout=cfg.timeout, deadline=deadline,
                verify=cfg.verify, max_body=cfg.max_response_bytes, keep_alive=self.keep_alive,
            )
        except requests.ConnectTimeout as exc:
            msg = f"timed out after {cfg.timeout:g} s connecting to {where}"
            raise TransportError(msg, latency_ms=watch.ms()) from exc
        except requests.ReadTimeout as exc:
            msg = f"no response from {where} within {cfg.timeout:g} s"
            raise TransportError(msg, latency_ms=watch.ms()) from exc
        except requests.exceptions.SSLError as exc:
            raise TransportError(f"TLS error with {where}: {_reason(exc)}", latency_ms=watch.ms()) from exc
        except requests.ConnectionError as exc:
            raise TransportError(f"connection to {where} failed: {_reason(exc)}", latency_ms=watch.ms()) from exc
        except requests.RequestException as exc:
            raise TransportError(f"request to {where} failed: {_reason(exc)}", latency_ms=watch.ms()) from exc

        ms = watch.ms()
        code = resp.status_code
        text = excerpt(resp.content)
        if 200 <= code < 300:
            return AttemptResult(status_code=code, latency_ms=ms, response_excerpt=text)
        common = {"status_code": code, "response_excerpt": text, "latency_ms": ms}
        if 300 <= code < 400:
            location = (resp.headers.get("Location") or "(no Location)")[:300]
            raise TransportError(
                f"redirect {code} to {location} not followed; configure the final URL", **common
            )
        if code == 410:
            raise TransportError("endpoint is gone (HTTP 410)", permanent=True, **common)
        retry_after = None
        if code in (429, 503):
            retry_after = parse_retry_after(resp.headers.get("Retry-After"), datetime.now(timezone.utc))
        raise TransportError(f"HTTP {code} from {where}", retry_after=retry_after, **common)
