"""The generic event API (``POST /api/v1/events``) -> ``Entry`` objects.

An event: ``{source, event, resource, severity, status: firing|resolved, dedup_key, summary,
labels, annotations, ts}`` (plus optional ``title``, ``plugin_id``, ``tenant_id``). Bodies are
batched like logs (array, ``{"events": [...]}``, NDJSON) and each event is judged on its own.
Dedup key: ``dedup_key`` when given, else ``source/event/resource``. An event's ``ts`` (default:
now) identifies its occurrence, so a client resending the same event counts it once.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from apps.core.events import EventError
from apps.core.vocabulary import AlertSource

from . import entries as f
from .entries import Entry

MAX_NAME = 100
MAX_RESOURCE = 200


def parse(items: list[object], *, tenant_slug: str, now: datetime, max_past: timedelta,
          max_future: timedelta) -> tuple[list[Entry], list[dict]]:
    """(entries, rejected ``{"index", "error"}``) of the parsed body items of tenant ``tenant_slug``."""
    out, rejected = [], []
    for i, item in enumerate(items):
        try:
            out.append(entry(item, tenant_slug=tenant_slug, now=now, max_past=max_past, max_future=max_future))
        except EventError as exc:
            rejected.append({"index": i, "error": str(exc)})
    return out, rejected


def entry(item: Any, *, tenant_slug: str, now: datetime, max_past: timedelta, max_future: timedelta) -> Entry:
    from apps.ingest.normalize import InvalidLine, _check_skew, _parse_id

    if isinstance(item, InvalidLine):
        raise EventError("event", item.error)
    if not isinstance(item, dict):
        raise EventError("event", f"must be a JSON object, got {f.json_type(item)}")
    tenant = item.get("tenant_id")
    if tenant not in (None, "", tenant_slug):
        raise EventError("tenant_id", f"this request writes tenant {tenant_slug!r}, the event names {tenant!r}"[:200])
    source = f.text(item.get("source"), "source", required=True, limit=MAX_NAME)
    name = f.text(item.get("event"), "event", required=True, limit=MAX_NAME)
    resource = f.text(item.get("resource"), "resource", limit=MAX_RESOURCE)
    labels = f.string_map(item.get("labels"), "labels")
    annotations = f.any_map(item.get("annotations"), "annotations")
    ts = f.optional_time(item.get("ts"), "ts") or now
    _check_skew(ts, now, max_past, max_future)
    plugin = _parse_id("plugin_id", item["plugin_id"]) if item.get("plugin_id") is not None else f.plugin_from(labels)
    title = f.text(item.get("title"), "title", limit=f.MAX_TITLE) or (f"{name} on {resource}" if resource else name)
    return Entry(
        source=AlertSource.EVENT.value, key=_key(item.get("dedup_key"), source, name, resource),
        status=f.status(item.get("status", f.FIRING), "status"), severity=f.strict_severity(item.get("severity"), "severity"),
        title=title[: f.MAX_TITLE], summary=f.text(item.get("summary"), "summary"), labels=labels,
        annotations={**annotations, "source": source, "event": name, **({"resource": resource} if resource else {})},
        started_at=ts, plugin=plugin,
    )


def _key(dedup_key: Any, source: str, name: str, resource: str) -> str:
    if dedup_key is not None and dedup_key != "":
        if not isinstance(dedup_key, str) or len(dedup_key) > f.MAX_KEY:
            raise EventError("dedup_key", f"must be a string of at most {f.MAX_KEY} characters")
        return dedup_key
    readable = f"{source}/{name}/{resource}"
    if len(readable) <= f.MAX_KEY:
        return readable
    return "sha256:" + hashlib.sha256(readable.encode()).hexdigest()[:40]
