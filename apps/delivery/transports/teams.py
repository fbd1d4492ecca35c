"""Microsoft Teams through a Workflows (Power Automate) webhook: ``POST <webhook_url>`` with the
Adaptive Card envelope the "Post to a channel when a webhook request is received" flow requires
(``{"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
"contentUrl": null, "content": <AdaptiveCard 1.4>}]}``; a bare ``{"text": ...}`` fails in the flow).

Sent for the same changes as Slack. Answers: any 2xx is success (Workflows answers 202, legacy
connectors 200 ``1``), except a 2xx whose body reports Teams' own 429 ("Microsoft Teams endpoint
returned HTTP error 429"): connectors relay the rate limit that way, and it is retried. 408 and 429
are retried (``Retry-After`` or the default wait), other 4xx are permanent, 5xx retried.
"""
from __future__ import annotations

from collections.abc import Mapping

from apps.delivery.transports.base import AttemptResult
from apps.delivery.transports.channel_kit import (
    DEFAULT_RATE_LIMIT_WAIT,
    ChannelRequest,
    cut,
    fail_http,
    post_json,
    required,
)
from apps.delivery.transports.channel_templates import escape_teams

KIND = "teams"
VENDOR = "Teams"
ESCAPE = escape_teams
CONFIG = {"webhook_url": {"secret": True, "required": True, "url": True,
                          "help": "Workflows webhook URL (https://...logic.azure.com/workflows/.../invoke?...)"}}
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
UPSTREAM_429 = "HTTP error 429"
BODY_MAX = 8000  # Teams refuses messages over ~28 KB; the facts and envelope stay far below
_COLOR = {"resolved": "Good", "acknowledged": "Warning", "test": "Accent"}


def render(change: str, alert: dict, texts: Mapping[str, str]) -> ChannelRequest | None:
    """The Workflows body; ``texts`` are the rendered title/body (already markdown-escaped)."""
    facts = [("Severity", str(alert.get("severity", "")).upper()), ("Tenant", alert.get("tenant") or "-"),
             ("Plugin", alert.get("plugin") or "-"), ("Occurrences", str(alert.get("count", ""))),
             ("State", str(alert.get("state", "")))]
    body: list[dict] = [
        {"type": "TextBlock", "text": cut(texts["title"], 400), "weight": "Bolder", "size": "Medium", "wrap": True,
         "color": _COLOR.get(change, "Attention")},
        {"type": "FactSet", "facts": [{"title": name, "value": escape_teams(value)} for name, value in facts]},
    ]
    if texts.get("body"):
        body.append({"type": "TextBlock", "text": cut(texts["body"], BODY_MAX), "wrap": True})
    card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
            "version": "1.4", "msteams": {"width": "Full"}, "body": body, "actions": []}
    if alert.get("url"):
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open in Alert Center", "url": alert["url"]}]
    envelope = {"type": "message", "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": None,
                                                     "content": card}]}
    return ChannelRequest(path="", payload=envelope)


def send(request: ChannelRequest, config: Mapping[str, str], *, timeout: float,
         keep_alive: bool = False) -> AttemptResult:
    """One POST to the channel's Workflows URL; see the module docstring for what each answer means."""
    url = required(config, "webhook_url", KIND) + request.path
    reply = post_json(url, request.payload, vendor=VENDOR, timeout=timeout, keep_alive=keep_alive)
    if 200 <= reply.status < 300:
        if UPSTREAM_429 in reply.text:
            reply.fail(f"HTTP {reply.status} from {reply.where} reports Teams rate limiting (upstream 429)",
                       retry_after=reply.retry_after(DEFAULT_RATE_LIMIT_WAIT))
        return reply.success()
    fail_http(reply, cut(reply.text, 200))
