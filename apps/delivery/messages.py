"""What is sent: webhook bodies, fallback email/SMS texts, tenant notices. Pure rendering, no writes.

Everything about an alert is rendered from its notification payload (the alerts app owns how an
alert looks to tenants): the webhook ``data`` is that payload as is; email and SMS are short
renderings of it.
"""
from __future__ import annotations

import html
from datetime import datetime
from typing import Any

import orjson

def webhook_body(event_type: str, data_json: bytes, at: datetime) -> bytes:
    """The frozen request body ``{"type", "timestamp", "data"}`` as compact JSON bytes; ``data_json`` is
    the notification's payload, embedded as is (the same bytes ``orjson.dumps`` of the dict gives)."""
    head = orjson.dumps({"type": event_type, "timestamp": at.isoformat()})
    return head[:-1] + b',"data":' + data_json + b"}"


def alert_email(alert: dict[str, Any], *, reason: str) -> dict[str, str]:
    """Subject, plain text and HTML for a fallback email about ``alert`` (a notification payload:
    its title already carries ``[ESCALATED]`` for an escalation)."""
    link = alert["url"]
    title = alert["title"]
    severity = alert["severity"]
    plugin = alert.get("plugin") or "-"
    subject = f"[{severity.upper()}] {title}"
    lines = [
        title, "",
        f"Severity: {severity}", f"Tenant: {alert['tenant']}", f"Plugin: {plugin}",
        f"Occurrences: {alert['count']}", f"First seen: {alert['first_seen']}",
        f"Last seen: {alert['last_seen']}", "",
        alert.get("summary") or "", "",
        f"Recommended action: {alert.get('recommended_action') or '-'}", "",
        f"Open in the console: {link}", "",
        f"You get this email because {reason}.",
    ]
    rows = "".join(
        f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in (("Severity", severity), ("Tenant", alert["tenant"]), ("Plugin", plugin),
                     ("Occurrences", alert["count"]), ("Last seen", alert["last_seen"]))
    )
    body_html = (
        f"<h2>{html.escape(title)}</h2><table>{rows}</table><p>{html.escape(alert.get('summary') or '')}</p>"
        f"<p><b>Recommended action:</b> {html.escape(alert.get('recommended_action') or '-')}</p>"
        f"<p><a href=\"{html.escape(link)}\">Open in the console</a></p>"
        f"<p><small>You get this email because {html.escape(reason)}.</small></p>"
    )
    return {"subject": subject, "text": "\n".join(lines), "html": body_html}


def alert_sms(alert: dict[str, Any]) -> dict[str, str]:
    """One SMS (the transport cuts it to 160 characters): severity, plugin, summary, link.

    The link goes first after the headline so truncation eats the summary, never the link.
    """
    head = f"[{alert['severity'].upper()}] {alert.get('plugin') or '-'}: {alert['title']}"
    link = alert["url"]
    summary = " ".join((alert.get("summary") or "").split())
    room = 160 - len(head) - len(link) - 2
    if room < 10:
        head = head[: max(20, 160 - len(link) - 5)]
        return {"text": f"{head} {link}"}
    if len(summary) > room:
        summary = summary[: room - 3].rstrip() + "..."
    return {"text": f"{head} {link} {summary}".strip()}


def notice_email(subject: str, text: str) -> dict[str, str]:
    """A plain notice to the tenant (endpoint disabled or restored)."""
    return {"subject": f"[Alert Center] {subject}", "text": text, "html": f"<p>{html.escape(text)}</p>"}


def encode(fields: dict[str, str]) -> bytes:
    return orjson.dumps(fields)


def decode(body: bytes | memoryview) -> dict[str, str]:
    return orjson.loads(bytes(body))
