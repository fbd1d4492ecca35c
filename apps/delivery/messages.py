"""What is sent: webhook bodies, fallback email/SMS texts, tenant notices. Pure rendering, no writes.

The webhook ``data`` is ``apps.alerts.payload.alert_payload`` (the alerts app owns how an alert
looks to tenants); email and SMS are short renderings of the same alert.
"""
from __future__ import annotations

import html
from datetime import datetime
from typing import Any

import orjson
from django.conf import settings

ESCALATED_PREFIX = "[ESCALATED]"


def alert_data(alert: Any, event_type: str) -> dict:
    """The alert payload for ``event_type``; ``alert.escalated`` titles carry ``[ESCALATED]``."""
    from apps.alerts.payload import alert_payload  # imported late: alerts loads after delivery's models

    try:
        data = alert_payload(alert, event_type=event_type)
    except TypeError:  # a payload builder without the event_type keyword
        data = alert_payload(alert)
    if event_type == "alert.escalated" and not str(data.get("title", "")).startswith(ESCALATED_PREFIX):
        data["title"] = f"{ESCALATED_PREFIX} {data.get('title', '')}"
    return data


def webhook_body(event_type: str, data: dict, at: datetime) -> bytes:
    """The frozen request body: ``{"type", "timestamp", "data"}`` as compact JSON bytes."""
    return orjson.dumps({"type": event_type, "timestamp": at.isoformat(), "data": data})


def console_link(alert_id: int | None) -> str:
    return f"{settings.CONSOLE_BASE_URL}/alerts/{alert_id}" if alert_id else settings.CONSOLE_BASE_URL


def _plugin(alert: Any) -> str:
    return alert.plugin.slug if getattr(alert, "plugin_id", None) else "-"


def _title(alert: Any, event_type: str) -> str:
    prefix = f"{ESCALATED_PREFIX} " if event_type == "alert.escalated" else ""
    return f"{prefix}{alert.title}"


def alert_email(alert: Any, event_type: str, *, reason: str) -> dict[str, str]:
    """Subject, plain text and HTML for a fallback email about ``alert``."""
    link = console_link(alert.pk)
    title = _title(alert, event_type)
    subject = f"[{alert.severity.upper()}] {title}"
    lines = [
        title, "",
        f"Severity: {alert.severity}", f"Tenant: {alert.tenant.slug}", f"Plugin: {_plugin(alert)}",
        f"Occurrences: {alert.count}", f"First seen: {alert.first_seen.isoformat()}",
        f"Last seen: {alert.last_seen.isoformat()}", "",
        alert.summary or "", "",
        f"Recommended action: {alert.recommended_action or '-'}", "",
        f"Open in the console: {link}", "",
        f"You get this email because {reason}.",
    ]
    rows = "".join(
        f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in (("Severity", alert.severity), ("Tenant", alert.tenant.slug), ("Plugin", _plugin(alert)),
                     ("Occurrences", alert.count), ("Last seen", alert.last_seen.isoformat()))
    )
    body_html = (
        f"<h2>{html.escape(title)}</h2><table>{rows}</table><p>{html.escape(alert.summary or '')}</p>"
        f"<p><b>Recommended action:</b> {html.escape(alert.recommended_action or '-')}</p>"
        f"<p><a href=\"{html.escape(link)}\">Open in the console</a></p>"
        f"<p><small>You get this email because {html.escape(reason)}.</small></p>"
    )
    return {"subject": subject, "text": "\n".join(lines), "html": body_html}


def alert_sms(alert: Any, event_type: str) -> dict[str, str]:
    """One SMS (the transport cuts it to 160 characters): severity, plugin, summary, link.

    The link goes first after the headline so truncation eats the summary, never the link.
    """
    head = f"[{alert.severity.upper()}] {_plugin(alert)}: {_title(alert, event_type)}"
    link = console_link(alert.pk)
    summary = " ".join((alert.summary or "").split())
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
