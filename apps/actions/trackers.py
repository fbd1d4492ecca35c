"""What a ticket bridge sends, by kind: pure request builders and response readers (no I/O).

Jira (REST API v2): create ``POST {base}/rest/api/2/issue`` with ``fields`` (project key, summary,
description, labels, priority name, issue type name) answering 201 ``{"id", "key", "self"}``;
comment ``POST {base}/rest/api/2/issue/{key}/comment {"body"}``; transition
``POST {base}/rest/api/2/issue/{key}/transitions {"transition": {"id"}}`` (204); errors come as
``{"errorMessages": [...], "errors": {field: message}}``.
Generic: the bridge's template renders the create body, the key and URL are read from the response
by dotted paths, and the comment goes to ``comment_url_template`` as ``{"body": ...}``.
"""
from __future__ import annotations

import base64
import json
from typing import Any

from .models import TicketBridge
from .outbound import CallResult
from .templating import dig, render_json, render_text

DEFAULT_PRIORITIES = {"emergency": "Highest", "critical": "High", "warning": "Medium", "info": "Low"}


class TrackerError(Exception):
    """The tracker answered, but not with what we need (an error status, no key)."""


def auth_headers(bridge: TicketBridge, secret: str) -> dict[str, str]:
    if bridge.auth == TicketBridge.Auth.BASIC:
        pair = base64.b64encode(f"{bridge.username}:{secret}".encode()).decode("ascii")
        return {"Authorization": f"Basic {pair}"}
    if bridge.auth == TicketBridge.Auth.BEARER:
        return {"Authorization": f"Bearer {secret}"}
    return {}


def _base(bridge: TicketBridge) -> str:
    return bridge.base_url.rstrip("/")


def _description(alert: dict) -> str:
    lines = [alert.get("summary") or "", ""]
    if alert.get("recommended_action"):
        lines += [f"Recommended action: {alert['recommended_action']}", ""]
    lines += [f"Severity: {alert['severity']}", f"Tenant: {alert['tenant']}", f"Plugin: {alert.get('plugin') or '-'}",
              f"Rule: {(alert.get('rule') or {}).get('key') or '-'}", f"Alert: {alert['url']}"]
    return "\n".join(lines).strip()


def create_request(bridge: TicketBridge, alert: dict) -> tuple[str, bytes]:
    """(url, body) creating a ticket for the alert payload ``alert``."""
    if bridge.kind == TicketBridge.Kind.JIRA:
        severity = alert["severity"]
        labels = [str(label).replace(" ", "-") for label in bridge.labels or []] + ["alertcenter", f"severity-{severity}"]
        fields = {
            "project": {"key": bridge.project_key},
            "summary": f"[{severity}] {alert['title']}"[:255],
            "description": _description(alert),
            "labels": list(dict.fromkeys(labels)),
            "priority": {"name": (bridge.priorities or {}).get(severity) or DEFAULT_PRIORITIES.get(severity, "Medium")},
            "issuetype": {"name": bridge.issue_type or "Bug"},
        }
        return f"{_base(bridge)}/rest/api/2/issue", json.dumps({"fields": fields}).encode()
    return bridge.base_url, render_json(bridge.body_template, {"alert": alert}, field="body_template")


def read_created(bridge: TicketBridge, result: CallResult) -> tuple[str, str]:
    """(key, url) from the tracker's answer to ``create_request``; TrackerError when it has none."""
    if not result.ok:
        raise TrackerError(error_message(result))
    document = result.json()
    if bridge.kind == TicketBridge.Kind.JIRA:
        key = dig(document, "key")
        url = f"{_base(bridge)}/browse/{key}" if key else ""
    else:
        key = dig(document, bridge.key_path or "key")
        url = dig(document, bridge.url_path) if bridge.url_path else ""
    if not key or not isinstance(key, (str, int)):
        raise TrackerError(f"HTTP {result.status} without a ticket key in the response: {result.excerpt}")
    url = url if isinstance(url, str) and url.startswith(("http://", "https://")) else ""
    return str(key)[:100], url[:500]


def comment_request(bridge: TicketBridge, key: str, text: str) -> tuple[str, bytes]:
    body = json.dumps({"body": text}).encode()
    if bridge.kind == TicketBridge.Kind.JIRA:
        return f"{_base(bridge)}/rest/api/2/issue/{key}/comment", body
    return render_text(bridge.comment_url_template, {"key": key}, field="comment_url_template").strip(), body


def transition_request(bridge: TicketBridge, key: str) -> tuple[str, bytes] | None:
    """The request closing the ticket on resolve, or None when the bridge has none configured."""
    if bridge.kind != TicketBridge.Kind.JIRA or not bridge.transition_id:
        return None
    body = json.dumps({"transition": {"id": bridge.transition_id}}).encode()
    return f"{_base(bridge)}/rest/api/2/issue/{key}/transitions", body


def error_message(result: CallResult) -> str:
    """'HTTP 400: summary: Field required; Project is archived' from a Jira-shaped error body."""
    document: Any = result.json()
    parts: list[str] = []
    if isinstance(document, dict):
        parts += [str(m) for m in document.get("errorMessages") or [] if m]
        errors = document.get("errors")
        if isinstance(errors, dict):
            parts += [f"{field}: {message}" for field, message in errors.items()]
    detail = "; ".join(parts) or result.excerpt or "(empty body)"
    return f"HTTP {result.status}: {detail}"[:1000]
