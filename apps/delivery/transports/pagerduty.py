"""PagerDuty Events API v2: ``POST {base_url}/v2/enqueue`` (base ``https://events.pagerduty.com``).

One PagerDuty alert per Alert Center alert: ``dedup_key`` is ``alertcenter-<tenant>-<alert id>``, so
triggered, escalated and reopened alerts send ``trigger`` (PagerDuty folds repeats into the open
incident, and opens a new one after a resolve), acknowledging sends ``acknowledge`` and resolving
sends ``resolve``. Other alert.updated changes send nothing. ``routing_key`` is the channel's secret
and is added at send time only.

Severity mapping keeps our four levels apart on PagerDuty's four: emergency -> critical,
critical -> error, warning -> warning, info -> info (so event rules can still tell an emergency
from a critical alert; Alertmanager's default is "error" for everything).

Answers (developer-docs events-API-v2 overview): 202 ``{"status": "success", "dedup_key": ...}`` is
success (any 2xx); 400 ``invalid event`` is permanent (as are other 4xx); 429 waits ``Retry-After``
or 30 s (PagerDuty's rate-limit page suggests retrying 30 s apart); 5xx retried.
"""
from __future__ import annotations

from collections.abc import Mapping

import orjson

from apps.delivery.transports.base import AttemptResult
from apps.delivery.transports.channel_kit import (
    ChannelRequest,
    cut,
    fail_http,
    post_json,
    required,
)

KIND = "pagerduty"
VENDOR = "PagerDuty"
ESCAPE = None  # plain text inside JSON
DEFAULT_BASE_URL = "https://events.pagerduty.com"
PATH = "/v2/enqueue"
CONFIG = {
    "routing_key": {"secret": True, "required": True,
                    "help": "Integration key (32 characters) of an Events API v2 integration or ruleset"},
    "base_url": {"secret": False, "required": False, "url": True, "default": DEFAULT_BASE_URL,
                 "help": "Events API base URL (EU accounts: https://events.eu.pagerduty.com)"},
}
SEVERITY = {"emergency": "critical", "critical": "error", "warning": "warning", "info": "info"}
ACTION = {"triggered": "trigger", "escalated": "trigger", "reopened": "trigger", "manual": "trigger",
          "test": "trigger", "acknowledged": "acknowledge", "resolved": "resolve"}
SUMMARY_MAX = 1024
MAX_EVENT_BYTES = 512_000  # PagerDuty refuses larger events; custom_details go first, as Alertmanager does


def dedup_key(alert: Mapping) -> str:
    """Stable per alert, so trigger, acknowledge and resolve reach one PagerDuty alert."""
    return f"alertcenter-{alert['tenant']}-{alert['id']}"


def _source(alert: Mapping) -> str:
    labels = alert.get("labels") or {}
    for key in ("host", "hostname", "instance"):
        if labels.get(key):
            return str(labels[key])
    return "/".join(str(p) for p in (alert.get("tenant"), alert.get("plugin")) if p)


def _details(alert: Mapping, body: str) -> dict:
    keys = ("tenant", "plugin", "state", "category", "count", "first_seen", "last_seen", "value", "threshold",
            "baseline", "labels", "annotations", "escalation_level", "source")
    details = {k: alert.get(k) for k in keys if alert.get(k) not in (None, "", {}, [])}
    details["rule"] = (alert.get("rule") or {}).get("key")
    if body:
        details["description"] = body
    return details


def render(change: str, alert: dict, texts: Mapping[str, str]) -> ChannelRequest | None:
    action = ACTION.get(change)
    if action is None:
        return None
    event: dict = {"event_action": action, "dedup_key": dedup_key(alert)}
    if action != "trigger":  # PagerDuty ignores a payload on acknowledge/resolve
        return ChannelRequest(path=PATH, payload=event)
    event["payload"] = {
        "summary": cut(texts["title"], SUMMARY_MAX),
        "source": _source(alert) or "alertcenter",
        "severity": SEVERITY.get(str(alert.get("severity")), "error"),
        "timestamp": alert.get("last_seen") or alert.get("first_seen"),
        "component": alert.get("plugin"),
        "group": alert.get("tenant"),
        "class": (alert.get("rule") or {}).get("key"),
        "custom_details": _details(alert, texts.get("body", "")),
    }
    event["payload"] = {k: v for k, v in event["payload"].items() if v not in (None, "")}
    if alert.get("url"):
        event["links"] = [{"href": alert["url"], "text": "Open in Alert Center"}]
        event.update(client="Alert Center", client_url=alert["url"])
    if len(orjson.dumps(event)) > MAX_EVENT_BYTES - 1024:  # room for the routing key and envelope
        event["payload"]["custom_details"] = {"note": "details dropped: the event exceeded PagerDuty's 512 KB",
                                              "count": alert.get("count")}
    return ChannelRequest(path=PATH, payload=event)


def send(request: ChannelRequest, config: Mapping[str, str], *, timeout: float,
         keep_alive: bool = False) -> AttemptResult:
    """One event to the Events API; see the module docstring for what each answer means."""
    key = required(config, "routing_key", KIND)
    base = (config.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
    reply = post_json(base + request.path, {"routing_key": key, **request.payload}, vendor=VENDOR, timeout=timeout, keep_alive=keep_alive)
    if 200 <= reply.status < 300:
        return reply.success()
    data = reply.json()
    detail = ""
    if isinstance(data, dict):
        detail = "; ".join(str(x) for x in [data.get("message"), *(data.get("errors") or [])] if x)
    fail_http(reply, cut(detail or reply.text, 300))
