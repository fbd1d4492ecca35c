"""SMS transport (fallback channel) for an HTTP provider API in Twilio's shape.

``POST {SMS_API_URL}/2010-04-01/Accounts/{SID}/Messages.json``, form fields ``To``, ``From``,
``Body``, HTTP basic auth (SID, token). The provider URL is operator configuration, not tenant input,
so no SSRF check; redirects are still not followed. Body is cut to 160 characters (one GSM-7 segment;
the ASCII "..." keeps it GSM-7, a Unicode ellipsis would double the cost).

Failure policy: 2xx success; 429 transient with ``retry_after``; other 4xx permanent (bad number,
bad credentials: resending will not help); 5xx, 3xx, timeouts and connection errors transient.
Each provider request has a total deadline (``SMS_TIMEOUT_SECONDS``: connect, headers and body
together) and reads at most ``DELIVERY_MAX_RESPONSE_BYTES`` of the answer (``apps.delivery.http``).
Several recipients are sent one by one; the first failure stops and is raised (earlier recipients
may get the message again on retry).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import quote

import requests

from apps.delivery.backoff import parse_retry_after
from apps.delivery.http import MAX_RESPONSE_BYTES, post_form
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

SMS_MAX_CHARS = 160


@dataclass(frozen=True)
class SmsConfig:
    api_url: str
    account_sid: str
    auth_token: str
    from_number: str
    timeout: float = 10.0  # total seconds per provider request
    enabled: bool = True
    max_response_bytes: int = MAX_RESPONSE_BYTES

    @classmethod
    def from_settings(cls) -> SmsConfig:
        """Build from ``SMS_API_URL``, ``SMS_ACCOUNT_SID``, ``SMS_AUTH_TOKEN``, ``SMS_FROM``, ``SMS_ENABLED``,
        ``SMS_TIMEOUT_SECONDS`` and ``DELIVERY_MAX_RESPONSE_BYTES``."""
        return cls(
            api_url=str(setting("SMS_API_URL", "") or ""),
            account_sid=str(setting("SMS_ACCOUNT_SID", "") or ""),
            auth_token=str(setting("SMS_AUTH_TOKEN", "") or ""),
            from_number=str(setting("SMS_FROM", "") or ""),
            enabled=bool(setting("SMS_ENABLED", True)),
            timeout=float(setting("SMS_TIMEOUT_SECONDS", 10.0)),
            max_response_bytes=int(setting("DELIVERY_MAX_RESPONSE_BYTES", MAX_RESPONSE_BYTES)),
        )


def truncate_sms(text: str, limit: int = SMS_MAX_CHARS) -> str:
    """Collapse whitespace and cut to ``limit`` characters, ending in "..." when cut."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _provider_message(resp: requests.Response) -> str:
    """Twilio errors are JSON ``{"code": ..., "message": ...}``; fall back to the raw excerpt."""
    try:
        data = resp.json()
        return f"{data.get('code', '')} {data.get('message', '')}".strip()
    except ValueError:
        return excerpt(resp.content, 200)


@register
class SmsTransport(Transport):
    kind = "sms"

    def __init__(self, config: SmsConfig | None = None) -> None:
        self.config = config  # None: read Django settings at send time

    def send(self, message: OutboundMessage) -> AttemptResult:
        cfg = self.config or SmsConfig.from_settings()
        if not cfg.enabled:
            raise TransportError("SMS delivery is disabled (SMS_ENABLED=0)", permanent=True, latency_ms=0)
        missing = [n for n, v in (("SMS_API_URL", cfg.api_url), ("SMS_ACCOUNT_SID", cfg.account_sid),
                                  ("SMS_AUTH_TOKEN", cfg.auth_token), ("SMS_FROM", cfg.from_number)) if not v]
        if missing:
            # Transient: the operator can fix the configuration and pending alerts then go out.
            raise TransportError(f"SMS is not configured: {', '.join(missing)} missing", latency_ms=0)
        if not message.recipients:
            raise TransportError("no SMS recipients", permanent=True, latency_ms=0)
        url = f"{cfg.api_url.rstrip('/')}/2010-04-01/Accounts/{quote(cfg.account_sid, safe='')}/Messages.json"
        body = truncate_sms(message.text or message.subject)
        watch = Stopwatch()
        last: AttemptResult | None = None
        for to in message.recipients:
            last = self._send_one(url, cfg, to, body, watch)
        assert last is not None
        return last

    def _send_one(self, url: str, cfg: SmsConfig, to: str, body: str, watch: Stopwatch) -> AttemptResult:
        try:
            resp = post_form(
                url,
                data={"To": to, "From": cfg.from_number, "Body": body},
                auth=(cfg.account_sid, cfg.auth_token),
                timeout=cfg.timeout,
                max_body=cfg.max_response_bytes,
            )
        except requests.Timeout as exc:
            msg = f"SMS provider did not answer within {cfg.timeout:g} s"
            raise TransportError(msg, latency_ms=watch.ms()) from exc
        except requests.RequestException as exc:
            raise TransportError(f"SMS provider unreachable: {exc}"[:400], latency_ms=watch.ms()) from exc
        code, ms, text = resp.status_code, watch.ms(), excerpt(resp.content)
        if 200 <= code < 300:
            return AttemptResult(status_code=code, latency_ms=ms, response_excerpt=text)
        common = {"status_code": code, "response_excerpt": text, "latency_ms": ms}
        detail = _provider_message(resp)
        if code == 429:
            retry_after = parse_retry_after(resp.headers.get("Retry-After"), datetime.now(timezone.utc))
            raise TransportError(f"SMS provider rate limited (429) {detail}".strip(), retry_after=retry_after, **common)
        if 400 <= code < 500:
            raise TransportError(f"SMS to {to} rejected: HTTP {code} {detail}".strip(), permanent=True, **common)
        raise TransportError(f"SMS provider error: HTTP {code} {detail}".strip(), **common)
