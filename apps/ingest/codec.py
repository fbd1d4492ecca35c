"""Encode normalized events for ``IngestBatch.payload`` and decode them in the detect worker.

One orjson document: a list of objects with one-letter keys (``l`` level, ``m`` message,
``t`` tenant slug, ``p`` plugin slug, ``s`` ts in integer microseconds since the epoch, ``r``
trace id, ``f`` fields; ``r``/``f`` omitted when empty). This is the hot path between the web
process and the worker, so it avoids JSONField encode/decode and datetime string formatting.
Decoding trusts the payload: it was produced by ``encode_events`` from validated events.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson

from .normalize import LEVEL_NUMBERS, Event

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_US = timedelta(microseconds=1)


def _micros(ts: datetime) -> int:
    # Exact integer arithmetic: float timestamps would lose microseconds for current dates.
    return (ts - _EPOCH) // _ONE_US


def encode_events(events: list[Event]) -> bytes:
    """The payload bytes for ``events`` (already validated and masked)."""
    out = []
    for e in events:
        item = {"l": e.level, "m": e.message, "t": e.tenant_id, "p": e.plugin_id, "s": _micros(e.ts)}
        if e.trace_id:
            item["r"] = e.trace_id
        if e.fields:
            item["f"] = e.fields
        out.append(item)
    return orjson.dumps(out)


def decode_events(payload: bytes | memoryview) -> list[Event]:
    """The events of a payload written by ``encode_events``, in the same order."""
    levels, epoch, micros, event = LEVEL_NUMBERS, _EPOCH, timedelta, Event
    # A batch's events share few timestamps (shippers stamp in ms or s): build each once.
    stamps: dict[int, datetime] = {}
    events = []
    for d in orjson.loads(bytes(payload)):
        level, s = d["l"], d["s"]
        ts = stamps.get(s)
        if ts is None:
            ts = stamps[s] = epoch + micros(microseconds=s)
        # Positional (the worker's hot path): level, level_no, message, tenant, plugin, ts, trace, fields.
        events.append(event(level, levels[level], d["m"], d["t"], d["p"], ts, d.get("r"), d.get("f") or {}))
    return events
