"""Bodies and URLs rendered from tenant-written Django templates, and dotted-path reads of JSON.

The engine has no loaders and autoescape off (JSON, not HTML); ``tojson`` turns any value into a
JSON literal. A template that does not parse or does not render valid JSON is refused with a message
naming the field, at save time (against a sample payload) and at run time.
"""
from __future__ import annotations

import json
from typing import Any

from django.template import Context, Engine, TemplateSyntaxError

from apps.core.errors import Unprocessable

ENGINE = Engine(autoescape=False, builtins=["apps.actions.template_filters"])
MAX_TEMPLATE = 20_000
MAX_RENDERED = 256 * 1024

SAMPLE_ALERT = {
    "id": 1, "tenant": "acme", "plugin": "checkout", "severity": "critical", "state": "OPEN",
    "title": 'Checkout "error" burst', "summary": "25 errors in 5m", "recommended_action": "Roll back",
    "rule": {"key": "plugin-error-burst", "version": 1}, "category": "error", "count": 25,
    "labels": {"env": "prod"}, "trace_ids": ["t1"], "ticket": None, "url": "https://console.example/alerts/1",
}


def render_text(source: str, context: dict[str, Any], *, field: str) -> str:
    """Render ``source`` with ``context``; Unprocessable naming ``field`` when it cannot."""
    if len(source) > MAX_TEMPLATE:
        raise Unprocessable(f"{field}: longer than {MAX_TEMPLATE} characters", details={field: ["too long"]})
    try:
        text = ENGINE.from_string(source).render(Context(context))
    except TemplateSyntaxError as exc:
        raise Unprocessable(f"{field}: template error: {exc}", details={field: [str(exc)]}) from exc
    except Exception as exc:  # noqa: BLE001 - a filter failing on odd data is the template's fault
        raise Unprocessable(f"{field}: rendering failed: {exc}", details={field: [str(exc)]}) from exc
    if len(text) > MAX_RENDERED:
        raise Unprocessable(f"{field}: rendered body is larger than {MAX_RENDERED} bytes", details={field: ["too large"]})
    return text


def render_json(source: str, context: dict[str, Any], *, field: str) -> bytes:
    """Render and check that the result is one JSON document; return it as UTF-8 bytes."""
    text = render_text(source, context, field=field)
    try:
        json.loads(text)
    except ValueError as exc:
        raise Unprocessable(f"{field}: the rendered body is not valid JSON ({exc}); use |tojson for values",
                            details={field: [f"not JSON: {exc}"]}) from exc
    return text.encode("utf-8")


def check_json_template(source: str, *, field: str, extra: dict[str, Any] | None = None) -> str:
    """Validate a body template against a sample alert (save time); returns it unchanged."""
    render_json(source, {"alert": SAMPLE_ALERT, **(extra or {})}, field=field)
    return source


def dig(document: Any, path: str) -> Any:
    """``dig({"data": {"key": "X"}}, "data.key") == "X"``; list items by index (``items.0.id``).

    Returns None when any step is missing.
    """
    node = document
    for part in [p for p in path.split(".") if p]:
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node
