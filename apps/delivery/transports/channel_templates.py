"""Human text of channel messages: Django templates with a default per kind under
``templates/delivery/channels/<kind>/`` and per-channel overrides of ``title``/``body``.

Context: the alert payload's fields at the top level (``title``, ``severity``, ``labels``, ``url``...),
the same dict as ``alert``, ``event_type`` and ``change`` (what happened: triggered, escalated,
acknowledged, resolved, reopened, manual, test). Rendering never autoescapes as HTML: each kind
escapes the payload's strings for its own markup first (Slack mrkdwn ``&<>``, Teams markdown), so a
template's own markup (``<url|link>`` in Slack) still works and an alert's text cannot inject any.

Tenant templates are limited: at most ``MAX_TEMPLATE_BYTES``, and only the tags in ``ALLOWED_TAGS``
(no ``include``/``extends``/``load``/``debug``, which could read server templates or internals).
A stored override that fails at send time falls back to the default: a broken template must not
silence an alert (``validate_template`` refuses it on save in the first place).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from django.template import Context, Template, TemplateSyntaxError, engines
from django.template.base import Lexer, TokenType

from apps.core.vocabulary import (
    EVENT_ESCALATED,
    EVENT_MANUAL,
    EVENT_TEST,
    EVENT_TRIGGERED,
    EVENT_UPDATED,
)

MAX_TEMPLATE_BYTES = 4096
ALLOWED_TAGS = frozenset({
    "if", "elif", "else", "endif", "for", "empty", "endfor", "with", "endwith", "firstof", "now", "comment",
    "endcomment", "spaceless", "endspaceless", "filter", "endfilter", "cycle", "resetcycle", "ifchanged",
    "endifchanged", "templatetag", "widthratio", "autoescape", "endautoescape",
})
# Per kind: template name -> default file under templates/delivery/channels/<kind>/.
TEMPLATE_FILES: dict[str, dict[str, str]] = {
    "slack": {"title": "title.txt", "body": "body.md"},
    "teams": {"title": "title.txt", "body": "body.md"},
    "pagerduty": {"title": "title.txt", "body": "body.txt"},
    "opsgenie": {"title": "title.txt", "body": "body.txt"},
    # Email and SMS default to apps.delivery.messages (the fallback texts); these names may be overridden.
    "email": {"title": "", "body": ""},
    "sms": {"body": ""},
}
# Alert states as delivery sees them in the payload (apps.alerts owns the model; delivery may not import it).
ACKNOWLEDGED, RESOLVED = "ACKNOWLEDGED", "RESOLVED"


def change_of(event_type: str, alert: Mapping[str, Any], changes: Mapping[str, Any] | None) -> str | None:
    """What happened, in one word, or None when the event is not worth a chat/paging message
    (an alert.updated without a state change: delivery state, assignee, annotations, suppression).

    ``changes`` is the notification's ``changes``; without it an alert.updated is taken to be the
    change to the payload's current state. Raises ``ValueError`` for an unknown event type.
    """
    if event_type == EVENT_TRIGGERED:
        return "reopened" if changes and changes.get("reopened") else "triggered"
    if event_type == EVENT_ESCALATED:
        return "escalated"
    if event_type == EVENT_MANUAL:
        return "manual"
    if event_type == EVENT_TEST:
        return "test"
    if event_type != EVENT_UPDATED:
        raise ValueError(f"unknown event type {event_type!r}")
    changed = dict(changes) if changes is not None else {"state": alert.get("state")}
    if changed.get("reopened"):
        return "reopened"
    return {ACKNOWLEDGED: "acknowledged", RESOLVED: "resolved"}.get(changed.get("state"))  # type: ignore[arg-type]


def escape_slack(text: str) -> str:
    """Slack's three control characters (api.slack.com/reference/surfaces/formatting#escaping)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_TEAMS_MARKDOWN = re.compile(r"([\\`*_\[\]()#>~|])")


def escape_teams(text: str) -> str:
    """Backslash before the markdown characters Adaptive Card TextBlocks interpret."""
    return _TEAMS_MARKDOWN.sub(r"\\\1", text)


def _escaped(value: Any, escape: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, dict):
        return {escape(str(k)): _escaped(v, escape) for k, v in value.items()}
    if isinstance(value, list):
        return [_escaped(v, escape) for v in value]
    return value


def context(alert: Mapping[str, Any], event_type: str, change: str, escape: Callable[[str], str] | None) -> dict:
    """The template context (see the module docstring), strings escaped with ``escape``."""
    data = _escaped(dict(alert), escape) if escape else dict(alert)
    return {**data, "alert": data, "event_type": event_type, "change": change}


def compile_template(text: str) -> Template:
    """Compile a tenant template, or ``ValueError`` naming the problem (size, tag, syntax)."""
    if not isinstance(text, str):
        raise ValueError("a template must be a string")
    size = len(text.encode("utf-8"))
    if size > MAX_TEMPLATE_BYTES:
        raise ValueError(f"template is {size} bytes; at most {MAX_TEMPLATE_BYTES} are allowed")
    for token in Lexer(text).tokenize():
        if token.token_type == TokenType.TEXT and ("{{" in token.contents or "{%" in token.contents):
            # Django would print an unclosed tag as text: almost certainly a typo, so say so now.
            raise ValueError(f"unclosed {{{{ or {{% on line {token.lineno}")
        if token.token_type == TokenType.BLOCK:
            tag = (token.contents.split() or [""])[0]
            if tag not in ALLOWED_TAGS:
                raise ValueError(f"tag {{% {tag} %}} is not allowed in channel templates (line {token.lineno})")
    try:
        return Template(text, engine=engines["django"].engine)
    except TemplateSyntaxError as exc:
        raise ValueError(f"template syntax error: {exc}") from None


def _default(kind: str, name: str) -> Template:
    return engines["django"].engine.get_template(f"delivery/channels/{kind}/{TEMPLATE_FILES[kind][name]}")


_BLANK_LINES = re.compile(r"\n[ \t]*(?:\n[ \t]*)+\n")


def render_with(template: Template, ctx: dict) -> str:
    """Render without HTML autoescaping; blank runs left by tags collapse to one empty line."""
    out = template.render(Context(ctx, autoescape=False))
    return _BLANK_LINES.sub("\n\n", out).strip()


def render_texts(kind: str, ctx: dict, overrides: Mapping[str, str] | None) -> dict[str, str]:
    """``{name: text}`` for each template name of ``kind``: the override when it renders, else the default."""
    texts = {}
    for name, filename in TEMPLATE_FILES[kind].items():
        override = (overrides or {}).get(name)
        text = None
        if override:
            try:
                text = render_with(compile_template(override), ctx)
            except Exception:  # noqa: BLE001 - see the module docstring: fall back, never go silent
                text = None
        if text is None and filename:
            text = render_with(_default(kind, name), ctx)
        if text is not None:
            texts[name] = text
    return texts


def sample_alert() -> dict[str, Any]:
    """A complete notification payload for previews and template validation."""
    return {
        "id": 12345, "tenant": "acme", "plugin": "checkout", "severity": "critical", "state": "OPEN",
        "delivery_state": "PENDING", "title": "Payment errors above 5% for 5 minutes",
        "summary": "42 errors in 5 minutes on checkout (threshold 10).",
        "recommended_action": "Check the payment provider status and roll back the last deploy.",
        "rule": {"key": "payment-errors", "version": 3}, "category": "errors", "count": 42, "window_seconds": 300,
        "first_seen": "2025-01-01T10:00:00+00:00", "last_seen": "2025-01-01T10:05:00+00:00", "trace_ids": [],
        "samples": [], "labels": {"env": "prod", "host": "web-1"}, "source": "log_rule",
        "annotations": {"runbook_url": "https://runbooks.example.com/payments"}, "value": 42.0, "threshold": 10.0,
        "baseline": {}, "ticket": None, "escalation_level": 0, "assignee": None, "acknowledged_at": None,
        "acknowledged_by": None, "resolved_at": None, "resolved_by": None, "reopened_count": 0,
        "created_at": "2025-01-01T10:05:00+00:00", "url": "https://alerts.example.com/alerts/12345",
    }
