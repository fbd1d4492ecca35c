"""Slack incoming webhook: ``POST <webhook_url>`` with ``text`` (the notification fallback) and
``blocks`` (header, facts, the body template, a button to the console).

Sent for triggered, escalated, acknowledged, resolved, reopened (and manual/test); nothing for other
alert.updated changes. Answers (api.slack.com/messaging/webhooks#handling_errors, changelog
2016-05-17): any 2xx is success (Slack says 200 ``ok``); 400 ``invalid_payload``/``no_text``,
403 ``action_prohibited``/``invalid_token``, 404 ``channel_not_found``/``no_service``, 410
``channel_is_archived`` are permanent (as is any other 4xx); 429 waits ``Retry-After``; 5xx
(``rollup_error``) is retried. The webhook URL is the secret and never enters the request.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

from apps.delivery.transports.base import AttemptResult
from apps.delivery.transports.channel_kit import (
    ChannelRequest,
    cut,
    fail_http,
    post_json,
    required,
)
from apps.delivery.transports.channel_templates import escape_slack

KIND = "slack"
VENDOR = "Slack"
ESCAPE = escape_slack
CONFIG = {"webhook_url": {"secret": True, "required": True, "url": True,
                          "help": "Incoming webhook URL (https://hooks.slack.com/services/...)"}}
# Block Kit limits: header text 150, section text 3000, field text 2000, button label 75; at most 50
# blocks a message (header, fields and the button take 3).
HEADER_MAX, SECTION_MAX, FIELD_MAX, BODY_SECTIONS_MAX = 150, 3000, 2000, 45
_PARTIAL_ENTITY = re.compile(r"&[a-z]{0,4}…$")


def _cut(text: str, limit: int) -> str:
    # Cutting escaped text can split "&amp;" into "&am": drop the fragment rather than send it.
    return _PARTIAL_ENTITY.sub("…", cut(text, limit))


def _sections(body: str) -> list[str]:
    """The body as section texts of at most SECTION_MAX characters, split between lines, so a long
    body (a grouped digest listing every alert) is shown whole rather than cut after 3,000 characters;
    what still does not fit in BODY_SECTIONS_MAX sections is cut."""
    out, current = [], ""
    for line in body.split("\n"):
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) <= SECTION_MAX:
            current = candidate
            continue
        if current:
            out.append(current)
        current = line
    if current:
        out.append(current)
    out = [_cut(text, SECTION_MAX) for text in out]
    if len(out) > BODY_SECTIONS_MAX:
        out = out[:BODY_SECTIONS_MAX - 1] + [_cut("\n".join(out[BODY_SECTIONS_MAX - 1:]), SECTION_MAX)]
    return out


def render(change: str, alert: dict, texts: Mapping[str, str]) -> ChannelRequest | None:
    """The webhook body; ``texts`` are the rendered title/body (already mrkdwn-escaped)."""
    title, body = texts["title"], texts.get("body", "")
    plugin = alert.get("plugin") or "-"
    fields = [("Severity", str(alert.get("severity", "")).upper()), ("Tenant", alert.get("tenant") or "-"),
              ("Plugin", plugin), ("Occurrences", str(alert.get("count", "")))]
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(title, HEADER_MAX), "emoji": True}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": _cut(f"*{name}*\n{escape_slack(str(value))}", FIELD_MAX)}
                                       for name, value in fields]},
    ]
    blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": text}} for text in _sections(body)]
    if alert.get("url"):
        blocks.append({"type": "actions", "elements": [{
            "type": "button", "text": {"type": "plain_text", "text": "Open in Alert Center"}, "url": alert["url"],
            "action_id": "open_alert",
        }]})
    return ChannelRequest(path="", payload={"text": _cut(title, SECTION_MAX), "blocks": blocks})


def send(request: ChannelRequest, config: Mapping[str, str], *, timeout: float,
         keep_alive: bool = False) -> AttemptResult:
    """One POST to the channel's webhook URL; see the module docstring for what each answer means."""
    url = required(config, "webhook_url", KIND) + request.path
    reply = post_json(url, request.payload, vendor=VENDOR, timeout=timeout, keep_alive=keep_alive)
    if 200 <= reply.status < 300:
        return reply.success()
    fail_http(reply, reply.text.strip()[:200])
