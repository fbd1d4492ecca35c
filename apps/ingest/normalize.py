"""Turn what a log shipper POSTs into validated, bounded ``Event`` objects (no Django, no I/O).

Two steps, two failure policies:

* ``parse_body(raw, content_type)`` splits a request body into items. It raises ``BodyError``
  only for a body that can never be valid (the API answers 422, which shippers such as
  syslog-ng drop instead of resending forever). A bad NDJSON line is not fatal: it becomes an
  ``InvalidLine`` placeholder at its index so only that item is rejected.
* ``normalize_event(item, ...)`` validates one item and returns an ``Event`` or raises
  ``EventError(field, message)``; the caller reports ``{"index": i, "error": str(err)}`` and
  carries on with the other items.

Tenancy: ``default_tenant`` is the tenant the API token is bound to. It fills a missing
``tenant_id``, and an event naming any *other* tenant is rejected here (field ``tenant_id``),
so a bound token can never write another tenant's events even if the caller forgets a check.
Pass ``default_tenant=None`` for unbound tokens: then ``tenant_id`` is required in the event.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from apps.core.events import Event, EventError  # noqa: F401  (re-exported for ingest)
from apps.core.vocabulary import ID_RE, LEVEL_NUMBERS, epoch_seconds, format_duration, parse_level

MAX_MESSAGE_BYTES = 8 * 1024
TRUNCATION_MARKER = "…[truncated]"
MAX_FIELDS = 50
MAX_FIELD_KEY_CHARS = 128
MAX_FIELD_VALUE_CHARS = 1024
MAX_LIST_ITEMS = 50
MAX_FIELD_DEPTH = 5
MAX_FIELD_NODES = 2000
MAX_TRACE_ID_CHARS = 128
MAX_EPOCH_CHARS = 64  # a nanosecond epoch with a fraction is ~30
DROPPED_FIELDS_KEY = "_dropped_fields"

_RFC3339_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)
_NUMERIC_RE = re.compile(r"-?\d+(?:\.\d+)?", re.ASCII)

# First present alias wins; the losers stay in ``fields`` under their own names.
_ALIASES: dict[str, tuple[str, ...]] = {
    "message": ("message", "msg", "MESSAGE"),
    "level": ("level", "severity", "lvl", "LEVEL", "PRIORITY"),
    "ts": ("ts", "timestamp", "@timestamp", "time", "ISODATE"),
    "tenant_id": ("tenant_id", "tenant", "TENANT"),
    "plugin_id": ("plugin_id", "plugin", "PROGRAM"),
    "trace_id": ("trace_id", "traceId", "trace"),
}
_RENAMED_FIELDS: dict[str, str] = {"HOST": "host"}


class BodyError(ValueError):
    """The whole request body can never be valid (HTTP 422)."""


@dataclass(slots=True, frozen=True)
class InvalidLine:
    """Placeholder for an NDJSON line that is not JSON; ``normalize_event`` rejects it."""

    error: str


# --------------------------------------------------------------------------- body


_NDJSON_TYPES = frozenset({
    "application/x-ndjson", "application/ndjson", "application/jsonl",
    "application/x-jsonlines", "application/jsonlines",
})


def parse_body(raw: bytes, content_type: str) -> list[object]:
    """Split a request body into items (dicts, other JSON values, or ``InvalidLine``).

    Accepted shapes: a JSON array; ``{"events": [...]}`` (only when ``events`` is the sole key,
    because a single event may legitimately carry a field called ``events``); a single JSON
    object; NDJSON when the content type says so or when a multi-line body is not one JSON
    document. Blank NDJSON lines are skipped and do not take an index.

    Raises ``BodyError`` for: empty body, invalid UTF-8, a body that is not JSON/NDJSON, a JSON
    scalar, ``{"events": <not a list>}``, and an NDJSON body in which no line is valid JSON.
    """
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if not raw.strip():
        raise BodyError("empty body")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(f"body is not valid UTF-8 (byte {exc.start})") from None

    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type in _NDJSON_TYPES:
        return _parse_ndjson(raw)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if raw.strip().count(b"\n"):
            return _parse_ndjson(raw)
        raise BodyError(f"body is not valid JSON: {exc}") from None
    return _items_of(doc)


def _items_of(doc: object) -> list[object]:
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict):
        if doc.keys() == {"events"}:
            events = doc["events"]
            if not isinstance(events, list):
                raise BodyError(f'"events" must be a list, got {_json_type(events)}')
            return events
        return [doc]
    raise BodyError(
        f"body must be a JSON array, an object or NDJSON, got {_json_type(doc)}"
    )


def _parse_ndjson(raw: bytes) -> list[object]:
    items: list[object] = []
    first_error: str | None = None
    any_valid = False
    for lineno, line in enumerate(raw.split(b"\n"), start=1):
        line = line.strip()
        if not line:
            continue
        try:
            items.append(orjson.loads(line))
            any_valid = True
        except orjson.JSONDecodeError as exc:
            error = f"line {lineno}: not valid JSON: {exc}"
            first_error = first_error or error
            items.append(InvalidLine(error))
    # A body in which nothing parses is plain text sent to the wrong endpoint: answer 422 so
    # the shipper drops it instead of us accepting "0 events" forever.
    if not any_valid:
        raise BodyError(f"no line of the NDJSON body is valid JSON ({first_error})")
    return items


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "an array", dict: "an object"}.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------- event


def normalize_event(
    raw: object,
    *,
    now: datetime,
    max_past: timedelta,
    max_future: timedelta,
    default_tenant: str | None = None,
) -> Event:
    """Validate one item from ``parse_body`` and return an ``Event``; raise ``EventError``.

    ``now`` must be timezone-aware. Missing or null ``ts`` means "received now".
    Required: ``level``, ``message``, ``plugin_id`` and ``tenant_id`` (unless
    ``default_tenant`` fills it).
    Strings lose NUL characters (PostgreSQL text/jsonb cannot store them).
    """
    if isinstance(raw, InvalidLine):
        raise EventError("event", raw.error)
    if not isinstance(raw, dict):
        raise EventError("event", f"must be a JSON object, got {_json_type(raw)}")

    rest = dict(raw)
    level = _parse_level(_take(rest, _LEVEL_KEYS))
    message = _parse_message(_take(rest, _MESSAGE_KEYS))
    tenant_id = _parse_tenant(_take(rest, _TENANT_KEYS), default_tenant)
    plugin_id = _parse_id("plugin_id", _take(rest, _PLUGIN_KEYS))
    ts_value = _take(rest, _TS_KEYS)
    ts = now if ts_value is _MISSING or ts_value is None else _parse_ts(ts_value)
    _check_skew(ts, now, max_past, max_future)
    trace_id = _parse_trace_id(_take(rest, _TRACE_KEYS))

    for src, dst in _RENAMED_FIELDS.items():
        if src in rest and dst not in rest:
            rest[dst] = rest.pop(src)

    # Positional: the hot path of intake (one call per event).
    return Event(level, LEVEL_NUMBERS[level], message, tenant_id, plugin_id, ts, trace_id, _bound_fields(rest))


_MISSING: Any = object()


def _take(rest: dict[str, Any], aliases: tuple[str, ...]) -> Any:
    """Pop and return the first of ``aliases`` present in ``rest`` (the others stay: they are fields)."""
    for key in aliases:
        value = rest.pop(key, _MISSING)
        if value is not _MISSING:
            return value
    return _MISSING


_LEVEL_KEYS, _MESSAGE_KEYS, _TENANT_KEYS, _PLUGIN_KEYS, _TS_KEYS, _TRACE_KEYS = (
    _ALIASES["level"], _ALIASES["message"], _ALIASES["tenant_id"], _ALIASES["plugin_id"], _ALIASES["ts"],
    _ALIASES["trace_id"])
# Level spellings and ids already seen valid: a batch repeats a handful of each thousands of times.
_LEVELS_SEEN: dict[str, str] = {}
_IDS_SEEN: set[str] = set()
_SEEN_MAX = 50_000


def _parse_level(value: Any) -> str:
    if type(value) is str:  # bool and int spellings go the long way: True must not pass as 1
        level = _LEVELS_SEEN.get(value)
        if level is not None:
            return level
    if value is _MISSING or value is None:
        raise EventError("level", "required")
    try:
        level = parse_level(value)
    except ValueError as exc:
        raise EventError("level", str(exc)) from None
    if type(value) is str and len(_LEVELS_SEEN) < _SEEN_MAX:
        _LEVELS_SEEN[value] = level
    return level


def _parse_message(value: Any) -> str:
    if value is _MISSING or value is None:
        raise EventError("message", "required")
    if not isinstance(value, str):
        raise EventError("message", f"must be a string, got {_json_type(value)}")
    if "\x00" in value:
        value = value.replace("\x00", "")
    message = value.rstrip("\r\n")
    if not message or message.isspace():
        raise EventError("message", "must not be empty")
    return message if len(message) * 4 <= MAX_MESSAGE_BYTES else truncate_utf8(message, MAX_MESSAGE_BYTES)


def truncate_utf8(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes (marker included), never mid-character."""
    # Every character is at most 4 bytes, so short strings skip the encode entirely.
    if len(text) * 4 <= max_bytes:
        return text
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    budget = max_bytes - len(TRUNCATION_MARKER.encode("utf-8"))
    return encoded[:budget].decode("utf-8", "ignore") + TRUNCATION_MARKER


def _parse_id(name: str, value: Any) -> str:
    if type(value) is str and value in _IDS_SEEN:
        return value
    if value is _MISSING or value is None or value == "":
        raise EventError(name, "required")
    if not isinstance(value, str):
        raise EventError(name, f"must be a string, got {_json_type(value)}")
    if not ID_RE.fullmatch(value):
        raise EventError(
            name, f"invalid {value[:80]!r}: use 1-63 letters, digits, '_', '.', '-', "
            "starting with a letter or digit")
    if len(_IDS_SEEN) < _SEEN_MAX:
        _IDS_SEEN.add(value)
    return value


def _parse_tenant(value: Any, default_tenant: str | None) -> str:
    if (value is _MISSING or value is None or value == "") and default_tenant:
        return default_tenant
    tenant_id = _parse_id("tenant_id", value)
    if default_tenant and tenant_id != default_tenant:
        raise EventError(
            "tenant_id", f"token is bound to tenant {default_tenant!r}, event names {tenant_id!r}")
    return tenant_id


def _parse_trace_id(value: Any) -> str | None:
    if value is _MISSING or value is None or value == "":
        return None
    if not isinstance(value, str):
        raise EventError("trace_id", f"must be a string, got {_json_type(value)}")
    # Printable ASCII without spaces: 0x21-0x7e.
    if not (len(value) <= MAX_TRACE_ID_CHARS and value.isascii() and value.isprintable() and " " not in value):
        raise EventError(
            "trace_id", f"must be 1-{MAX_TRACE_ID_CHARS} printable ASCII characters without spaces")
    return value


def _parse_ts(value: Any) -> datetime:
    if isinstance(value, bool):
        raise EventError("ts", f"must be RFC 3339 or epoch seconds/milliseconds, got {value!r}")
    if isinstance(value, (int, float)):
        return _from_epoch(value)
    if not isinstance(value, str):
        raise EventError(
            "ts", f"must be RFC 3339 or epoch seconds/milliseconds, got {_json_type(value)}")
    text = value.strip()
    # A date has its first '-' at index 4, which no number has: test for a number only otherwise.
    if text[4:5] != "-" and _NUMERIC_RE.fullmatch(text):
        if len(text) > MAX_EPOCH_CHARS:  # int() refuses over 4300 digits, float() over 308: 500s
            raise EventError("ts", f"invalid epoch {text[:64]}... ({len(text)} characters)")
        return _from_epoch(float(text) if "." in text else int(text))
    m = _RFC3339_RE.fullmatch(text)
    if m is None:
        raise EventError("ts", f"not RFC 3339 (with offset) nor epoch: {value[:64]!r}")
    try:
        # The regex has checked the shape; fromisoformat builds it ~10x faster than the groups
        # below (it refuses lowercase 't'/'z' and impossible dates: those take the long way).
        parsed = datetime.fromisoformat(text)
    except ValueError:
        pass
    else:
        return parsed if parsed.tzinfo is timezone.utc else _in_utc(parsed, value)
    year, month, day, hour, minute, second, frac, zulu, sign, off_h, off_m = m.groups()
    offset = timedelta(0) if zulu else (1 if sign == "+" else -1) * timedelta(
        hours=int(off_h), minutes=int(off_m))
    try:
        local = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                         int((frac or "0").ljust(6, "0")[:6]), tzinfo=timezone(offset))
    except ValueError as exc:
        raise EventError("ts", f"invalid date/time {value!r}: {exc}") from None
    return _in_utc(local, value)


def _in_utc(local: datetime, value: str) -> datetime:
    try:
        return local.astimezone(timezone.utc)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00: its offset moves it out of datetime's years
        message = f"{value[:64]!r} is out of range (in UTC it falls before year 1 or after 9999)"
        raise EventError("ts", message) from None


def _from_epoch(value: int | float) -> datetime:
    if not math.isfinite(value) or value < 0:
        raise EventError("ts", f"invalid epoch {value!r}")
    try:
        return datetime.fromtimestamp(epoch_seconds(value), tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise EventError("ts", f"invalid epoch {value!r}") from None


def _check_skew(ts: datetime, now: datetime, max_past: timedelta, max_future: timedelta) -> None:
    delta = ts - now
    if delta > max_future:
        raise EventError("ts", f"ts {format_ts(ts)} is {_human(delta)} in the future "
                               f"(max {_fmt_max(max_future)})")
    if -delta > max_past:
        raise EventError("ts", f"ts {format_ts(ts)} is {_human(-delta)} in the past "
                               f"(max {_fmt_max(max_past)})")


def format_ts(ts: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix, microseconds only when present."""
    ts = ts.astimezone(timezone.utc)
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if ts.microsecond else "%Y-%m-%dT%H:%M:%SZ"
    return ts.strftime(fmt)


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def _fmt_max(delta: timedelta) -> str:
    return format_duration(int(delta.total_seconds()))


# --------------------------------------------------------------------------- fields


def _bound_fields(rest: dict[str, Any]) -> dict[str, Any]:
    # Most events carry a few flat, short fields: those are within every bound as they are.
    if len(rest) <= MAX_FIELDS:
        for key, value in rest.items():
            kind = type(value)
            if kind is str:
                if len(value) > MAX_FIELD_VALUE_CHARS or "\x00" in value:
                    break
            elif kind is not int and kind is not float and kind is not bool and value is not None:
                break
            if len(key) > MAX_FIELD_KEY_CHARS or "\x00" in key:
                break
        else:
            return rest
    budget = [MAX_FIELD_NODES]
    return _bound_dict(rest, "fields", 1, budget)


def _bound_dict(obj: dict[str, Any], path: str, depth: int, budget: list[int]) -> dict[str, Any]:
    if depth > MAX_FIELD_DEPTH:
        raise EventError(path, f"nested deeper than {MAX_FIELD_DEPTH} levels")
    out: dict[str, Any] = {}
    dropped = 0
    for key, value in obj.items():
        if len(out) >= MAX_FIELDS:
            dropped += 1
            continue
        key = key.replace("\x00", "")[:MAX_FIELD_KEY_CHARS]
        out[key] = _bound_value(value, f"{path}.{key}", depth, budget)
    if dropped:
        out[DROPPED_FIELDS_KEY] = dropped
    return out


def _bound_value(value: Any, path: str, depth: int, budget: list[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise EventError("fields", f"too large (more than {MAX_FIELD_NODES} values)")
    if isinstance(value, str):
        value = value.replace("\x00", "")
        if len(value) > MAX_FIELD_VALUE_CHARS:
            value = value[:MAX_FIELD_VALUE_CHARS] + TRUNCATION_MARKER
        return value
    if isinstance(value, dict):
        return _bound_dict(value, path, depth + 1, budget)
    if isinstance(value, list):
        if depth + 1 > MAX_FIELD_DEPTH:
            raise EventError(path, f"nested deeper than {MAX_FIELD_DEPTH} levels")
        items = [_bound_value(v, f"{path}[{i}]", depth + 1, budget)
                 for i, v in enumerate(value[:MAX_LIST_ITEMS])]
        if len(value) > MAX_LIST_ITEMS:
            items.append(TRUNCATION_MARKER)
        return items
    return value
