"""Opsgenie Alert API v2 (docs.opsgenie.com/docs/alert-api), base ``https://api.opsgenie.com``
(EU: ``https://api.eu.opsgenie.com``), header ``Authorization: GenieKey <api_key>``.

One Opsgenie alert per Alert Center alert, addressed by ``alias`` = ``alertcenter-<tenant>-<id>``:
triggered, escalated and reopened alerts ``POST /v2/alerts`` (Opsgenie deduplicates an open alias),
acknowledging posts ``/v2/alerts/<alias>/acknowledge?identifierType=alias``, resolving posts
``/v2/alerts/<alias>/close?identifierType=alias``. Priority from severity: emergency P1, critical
P2, warning P3 (Opsgenie's default), info P5.

Answers: 202 ``{"result": "Request will be processed", "requestId": ...}`` is success (any 2xx; the
API is asynchronous); 400, 401 (bad key), 403, 404, 422 and other 4xx are permanent; 429 waits
``Retry-After`` or the default wait; 5xx retried.
"""
from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

import orjson

from apps.delivery.transports.base import AttemptResult
from apps.delivery.transports.channel_kit import (
    ChannelRequest,
    cut,
    fail_http,
    post_json,
    required,
)

KIND = "opsgenie"
VENDOR = "Opsgenie"
ESCAPE = None  # plain text inside JSON
DEFAULT_BASE_URL = "https://api.opsgenie.com"
CONFIG = {
    "api_key": {"secret": True, "required": True, "help": "API key of an Opsgenie API integration"},
    "base_url": {"secret": False, "required": False, "url": True, "default": DEFAULT_BASE_URL,
                 "help": "Alert API base URL (EU: https://api.eu.opsgenie.com)"},
}
PRIORITY = {"emergency": "P1", "critical": "P2", "warning": "P3", "info": "P5"}
SOURCE = "Alert Center"
# Field limits from the Alert API's create request.
MESSAGE_MAX, ALIAS_MAX, DESCRIPTION_MAX, ENTITY_MAX, TAG_MAX, TAGS_MAX, DETAIL_MAX = 130, 512, 15000, 512, 50, 20, 8000
CREATE = {"triggered", "escalated", "reopened", "manual", "test"}


def alias(alert: Mapping) -> str:
    """Stable per alert, so create, acknowledge and close reach one Opsgenie alert."""
    return f"alertcenter-{alert['tenant']}-{alert['id']}"[:ALIAS_MAX]


def _text(value: object) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _details(alert: Mapping) -> dict[str, str]:
    """Opsgenie details are a flat string map: labels and annotations become ``label.<k>``/``annotation.<k>``."""
    flat: dict[str, object] = {k: alert.get(k) for k in ("tenant", "plugin", "severity", "state", "category", "count",
                                                          "first_seen", "last_seen", "value", "threshold", "url")}
    flat["rule"] = (alert.get("rule") or {}).get("key")
    flat.update({f"label.{k}": v for k, v in (alert.get("labels") or {}).items()})
    flat.update({f"annotation.{k}": v for k, v in (alert.get("annotations") or {}).items()})
    return {k: cut(_text(v), DETAIL_MAX) for k, v in flat.items() if v not in (None, "")}


def _tags(alert: Mapping) -> list[str]:
    tags = ["alertcenter", f"severity:{alert.get('severity')}", f"tenant:{alert.get('tenant')}"]
    tags += [f"{k}:{alert[k]}" for k in ("plugin", "category", "source") if alert.get(k)]
    return [cut(t, TAG_MAX) for t in tags][:TAGS_MAX]


def render(change: str, alert: dict, texts: Mapping[str, str]) -> ChannelRequest | None:
    key = quote(alias(alert), safe="")
    if change == "acknowledged":
        note = f"Acknowledged in Alert Center by {alert.get('acknowledged_by') or 'someone'}"
        return ChannelRequest(path=f"/v2/alerts/{key}/acknowledge?identifierType=alias",
                              payload={"source": SOURCE, "user": cut(alert.get("acknowledged_by") or SOURCE, 100),
                                       "note": note})
    if change == "resolved":
        note = f"Resolved in Alert Center by {alert.get('resolved_by') or 'someone'}"
        return ChannelRequest(path=f"/v2/alerts/{key}/close?identifierType=alias",
                              payload={"source": SOURCE, "user": cut(alert.get("resolved_by") or SOURCE, 100),
                                       "note": note})
    if change not in CREATE:
        return None
    entity = "/".join(str(p) for p in (alert.get("tenant"), alert.get("plugin")) if p)
    return ChannelRequest(path="/v2/alerts", payload={
        "message": cut(texts["title"], MESSAGE_MAX),
        "alias": alias(alert),
        "description": cut(texts.get("body", ""), DESCRIPTION_MAX),
        "priority": PRIORITY.get(str(alert.get("severity")), "P3"),
        "details": _details(alert),
        "tags": _tags(alert),
        "source": SOURCE,
        "entity": cut(entity, ENTITY_MAX),
    })


def send(request: ChannelRequest, config: Mapping[str, str], *, timeout: float,
         keep_alive: bool = False) -> AttemptResult:
    """One Alert API request; see the module docstring for what each answer means."""
    key = required(config, "api_key", KIND)
    base = (config.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
    reply = post_json(base + request.path, request.payload, vendor=VENDOR, timeout=timeout, keep_alive=keep_alive,
                      headers={"Authorization": f"GenieKey {key}"})
    if 200 <= reply.status < 300:
        return reply.success()
    data = reply.json()
    detail = ""
    if isinstance(data, dict):
        errors = data.get("errors")
        detail = str(data.get("message") or "") + (f" {orjson.dumps(errors).decode()}" if errors else "")
    fail_http(reply, cut(detail or reply.text, 300))
