"""Sample events pasted into a rule dry run (admin page, ``POST /api/v1/rules/test``): NDJSON lines,
``LEVEL message`` lines or a list of event mappings, validated exactly like ingested events."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Sequence

import orjson

from apps.core.events import Event, EventError

from .normalize import normalize_event

MAX_SAMPLES = 1000
_WIDE = timedelta(days=3650)  # a dry run accepts old samples: skew limits are for live ingest


def _plain_line(line: str) -> dict[str, Any]:
    """``ERROR message``, ``[ERROR] message`` or ``ERROR: message`` -> an event mapping."""
    head, _, rest = line.partition(" ")
    level = head.strip("[]:")
    if not rest.strip():
        raise EventError("line", "expected '<LEVEL> <message>' or a JSON object")
    return {"level": level, "message": rest.strip()}


def parse_samples(items: str | Sequence[Any], *, tenant: str, plugin: str = "dry-run",
                  now: datetime) -> tuple[list[Event], list[int], list[dict[str, Any]]]:
    """Events from pasted text (NDJSON or ``LEVEL message`` lines) or a list of event mappings.

    Returns (events, their sample indices, errors); a bad line is reported and skipped. Every event
    belongs to ``tenant`` (the dry run never reads another tenant's overrides).
    """
    raw: list[Any] = []
    if isinstance(items, str):
        for line in items.splitlines():
            line = line.strip()
            if not line:
                continue
            if line.startswith("{"):
                try:
                    raw.append(orjson.loads(line))
                except orjson.JSONDecodeError as exc:
                    raw.append(EventError("line", f"not valid JSON: {exc}"))
            else:
                try:
                    raw.append(_plain_line(line))
                except EventError as exc:
                    raw.append(exc)
    else:
        raw = list(items)
    events, indices, errors = [], [], []
    for i, item in enumerate(raw[:MAX_SAMPLES]):
        try:
            if isinstance(item, EventError):
                raise item
            if isinstance(item, dict):
                item = {**item, "tenant_id": tenant}
                item.setdefault("plugin_id", plugin)
            events.append(normalize_event(item, now=now, max_past=_WIDE, max_future=_WIDE, default_tenant=tenant))
            indices.append(i)
        except EventError as exc:
            errors.append({"index": i, "error": str(exc)})
    if len(raw) > MAX_SAMPLES:
        errors.append({"index": MAX_SAMPLES, "error": f"only the first {MAX_SAMPLES} samples are tested"})
    return events, indices, errors
