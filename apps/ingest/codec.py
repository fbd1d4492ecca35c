"""Encode normalized events for ``IngestBatch.payload`` and decode them in the detect worker.

One orjson document: a list with one array per event, ``[level, message, tenant slug, plugin
slug, ts in integer microseconds since the epoch, trace id or null, fields or null]``. This is
the hot path between the web process and the worker, so it avoids JSONField encode/decode,
datetime string formatting and a dict per event: arrays made the payload ~20% smaller and
encoding plus decoding ~45% cheaper than objects with one-letter keys (the format before, still
decoded: batches stored by an older version may be pending at an upgrade).
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
    micros = _micros
    return orjson.dumps([(e.level, e.message, e.tenant_id, e.plugin_id, micros(e.ts), e.trace_id or None,
                          e.fields or None) for e in events])


def decode_events(payload: bytes | memoryview) -> list[Event]:
    """The events of a payload written by ``encode_events``, in the same order."""
    items = orjson.loads(bytes(payload))
    if items and type(items[0]) is dict:
        return _decode_objects(items)
    levels, stamp, event = LEVEL_NUMBERS, _stamps(), Event
    # Positional (the worker's hot path): level, level_no, message, tenant, plugin, ts, trace, fields.
    return [event(level, levels[level], message, tenant, plugin, stamp(s), trace, fields or {})
            for level, message, tenant, plugin, s, trace, fields in items]


def _decode_objects(items: list[dict]) -> list[Event]:
    # The format before arrays: {"l", "m", "t", "p", "s", "r"?, "f"?} per event.
    levels, stamp, event = LEVEL_NUMBERS, _stamps(), Event
    return [event(d["l"], levels[d["l"]], d["m"], d["t"], d["p"], stamp(d["s"]), d.get("r"), d.get("f") or {})
            for d in items]


def _stamps():
    """micros -> aware datetime, each distinct value built once: a batch's events share few
    timestamps (shippers stamp in ms or s)."""
    cache: dict[int, datetime] = {}
    epoch, micros = _EPOCH, timedelta

    def stamp(s: int) -> datetime:
        ts = cache.get(s)
        if ts is None:
            ts = cache[s] = epoch + micros(microseconds=s)
        return ts
    return stamp
