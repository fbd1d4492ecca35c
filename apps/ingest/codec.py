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
    levels = LEVEL_NUMBERS
    events = []
    for d in orjson.loads(bytes(payload)):
        level = d["l"]
        events.append(Event(
            level=level, level_no=levels[level], message=d["m"], tenant_id=d["t"], plugin_id=d["p"],
            ts=_EPOCH + timedelta(microseconds=d["s"]), trace_id=d.get("r"), fields=d.get("f") or {},
        ))
    return events
