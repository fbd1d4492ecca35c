"""``Entry``: one inbound alert or event, whatever system sent it, and its batch payload codec.

Pure functions, no database. The field helpers raise ``EventError(field, message)`` naming the
field the way the sender wrote it (``alerts[2].labels``), so a refusal tells the sender what to fix.
"""
from __future__ import annotations

import hashlib
import math
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from django.conf import settings

from apps.core.events import EventError
from apps.core.vocabulary import SEVERITIES

from ..normalize import MAX_FIELD_DEPTH

FIRING = "firing"
RESOLVED = "resolved"
STATUSES = (FIRING, RESOLVED)
DEFAULT_SEVERITY = "warning"
MAX_TITLE = 300
MAX_TEXT = 8 * 1024
MAX_KEY = 100
MAX_LABELS = 64
MAX_LABEL_NAME = 128
MAX_LABEL_VALUE = 1024
MAX_PLUGIN_SLUG = 63
_NOT_ID = re.compile(r"[^A-Za-z0-9_.-]+")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_US = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Entry:
    """One alert or event to fire or resolve, keyed by (tenant, source, key).

    ``started_at`` is the source's own start time of this occurrence (Alertmanager/Grafana
    ``startsAt``): a repeat with the same value is the same occurrence. None (events): every
    firing entry is a new occurrence.
    """

    source: str
    key: str
    status: str
    severity: str
    title: str
    summary: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, Any] = field(default_factory=dict)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    plugin: str | None = None
    value: float | None = None


# --------------------------------------------------------------------------- codec


def _micros(ts: datetime | None) -> int | None:
    return None if ts is None else (ts - _EPOCH) // _ONE_US


def _from_micros(value: int | None) -> datetime | None:
    return None if value is None else _EPOCH + timedelta(microseconds=value)


def encode_entries(entries: list[Entry]) -> bytes:
    """The ``IngestBatch.payload`` bytes of validated, masked ``entries``."""
    out = []
    for e in entries:
        d = asdict(e)
        d["started_at"], d["ended_at"] = _micros(e.started_at), _micros(e.ended_at)
        out.append(d)
    return orjson.dumps(out)


def decode_entries(payload: bytes | memoryview) -> list[Entry]:
    """The entries written by ``encode_entries``, in order."""
    out = []
    for d in orjson.loads(bytes(payload)):
        d["started_at"], d["ended_at"] = _from_micros(d["started_at"]), _from_micros(d["ended_at"])
        out.append(Entry(**d))
    return out


# --------------------------------------------------------------------------- field helpers


def json_type(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "an array", dict: "an object"}.get(type(value), type(value).__name__)


def text(value: Any, where: str, *, required: bool = False, limit: int = MAX_TEXT) -> str:
    """A string field (None/absent -> "" unless required), NULs dropped, cut to ``limit``."""
    if value is None or value == "":
        if required:
            raise EventError(where, "is required")
        return ""
    if not isinstance(value, str):
        raise EventError(where, f"must be a string, got {json_type(value)}")
    value = value.replace("\x00", "")
    return value if len(value) <= limit else value[: limit - 1] + "…"


def string_map(value: Any, where: str) -> dict[str, str]:
    """An object of scalar values, as strings (labels): bounded in size, nothing nested."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise EventError(where, f"must be an object, got {json_type(value)}")
    if len(value) > MAX_LABELS:
        raise EventError(where, f"has {len(value)} entries; at most {MAX_LABELS}")
    out = {}
    for name, item in value.items():
        if not name or len(name) > MAX_LABEL_NAME:
            raise EventError(where, f"name {name[:40]!r} must be 1-{MAX_LABEL_NAME} characters")
        if isinstance(item, bool) or item is None:
            item = "" if item is None else str(item).lower()
        elif isinstance(item, (int, float)):
            item = str(item)
        elif not isinstance(item, str):
            raise EventError(f"{where}.{name}", f"must be a string or number, got {json_type(item)}")
        out[name.replace("\x00", "")] = text(item, f"{where}.{name}", limit=MAX_LABEL_VALUE)
    return out


def any_map(value: Any, where: str) -> dict[str, Any]:
    """An object kept as JSON (annotations): string values bounded, at most MAX_LABELS keys,
    nested at most as deep as a log event's fields (``check_depth``)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise EventError(where, f"must be an object, got {json_type(value)}")
    if len(value) > MAX_LABELS:
        raise EventError(where, f"has {len(value)} entries; at most {MAX_LABELS}")
    check_depth(value, where)
    return {name.replace("\x00", "")[:MAX_LABEL_NAME]: text(item, f"{where}.{name}") if isinstance(item, str) else item
            for name, item in value.items()}


def check_depth(value: Any, where: str, depth: int = 1) -> None:
    """Refuse JSON kept as it is that nests deeper than MAX_FIELD_DEPTH levels (``value`` is level
    1), naming the first path too deep the way the logs' fields do. Deeper could not be stored:
    the batch codec stops at orjson's 254 levels, masking and ``asdict`` at Python's recursion limit."""
    if depth > MAX_FIELD_DEPTH:
        raise EventError(where, f"nested deeper than {MAX_FIELD_DEPTH} levels")
    pairs = value.items() if isinstance(value, dict) else enumerate(value)  # an object or an array
    for key, item in pairs:
        if isinstance(item, (dict, list)):
            path = f"{where}.{key[:MAX_LABEL_NAME]}" if isinstance(value, dict) else f"{where}[{key}]"
            check_depth(item, path, depth + 1)


def status(value: Any, where: str) -> str:
    if value not in STATUSES:
        raise EventError(where, f"must be one of {', '.join(STATUSES)}, got {value!r}"[:200])
    return value


def severity_from(label: Any) -> str:
    """Our severity for a source's severity label (ALERTMANAGER_SEVERITY_MAP; unknown -> warning)."""
    if not isinstance(label, str):
        return DEFAULT_SEVERITY
    return settings.ALERTMANAGER_SEVERITY_MAP.get(label.strip().lower(), DEFAULT_SEVERITY)


def strict_severity(value: Any, where: str) -> str:
    """A severity the sender chose explicitly: ours or a mapped name; anything else is an error."""
    if value is None:
        return DEFAULT_SEVERITY
    if isinstance(value, str):
        name = value.strip().lower()
        if name in SEVERITIES:
            return name
        if name in settings.ALERTMANAGER_SEVERITY_MAP:
            return settings.ALERTMANAGER_SEVERITY_MAP[name]
    known = sorted(set(SEVERITIES) | set(settings.ALERTMANAGER_SEVERITY_MAP))
    raise EventError(where, f"unknown severity {value!r}; known: {', '.join(known)}"[:300])


def plugin_from(labels: dict[str, str]) -> str | None:
    """The plugin slug named by the first INTEGRATIONS_PLUGIN_LABELS label present, or None.

    Label values are free text (``kubernetes-pods/api``): characters a plugin id cannot hold
    become ``-`` so the same label value always names the same plugin."""
    for name in settings.INTEGRATIONS_PLUGIN_LABELS:
        slug = _NOT_ID.sub("-", labels.get(name) or "").lstrip("-._")[:MAX_PLUGIN_SLUG]
        if slug:
            return slug
    return None


def key_of(value: Any, where: str, labels: dict[str, str]) -> str:
    """The sender's fingerprint when given, else a stable hash of the labels (older senders)."""
    if value is None or value == "":
        canonical = orjson.dumps(labels, option=orjson.OPT_SORT_KEYS)
        return "labels:" + hashlib.sha256(canonical).hexdigest()[:32]
    if not isinstance(value, str) or len(value) > MAX_KEY:
        raise EventError(where, f"must be a string of at most {MAX_KEY} characters")
    return value


def optional_time(value: Any, where: str) -> datetime | None:
    """An RFC 3339 time; None for absent and for Go's zero time (``0001-01-01T00:00:00Z``,
    Alertmanager's endsAt of a firing alert)."""
    from apps.ingest.normalize import _parse_ts  # the one RFC 3339 parser of the intake

    if value is None or value == "" or (isinstance(value, str) and value.startswith("0001-01-01")):
        return None
    try:
        return _parse_ts(value)
    except EventError as exc:
        raise EventError(where, exc.message) from None


def one_number(values: Any) -> float | None:
    """The value when ``values`` ({refId: number}) holds exactly one finite number."""
    if not isinstance(values, dict):
        return None
    numbers = [v for v in values.values() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(numbers) == 1 and math.isfinite(numbers[0]):
        return float(numbers[0])
    return None


def title_of(labels: dict[str, str], annotations: dict[str, Any], fallback: str) -> str:
    summary = annotations.get("summary")
    title = summary if isinstance(summary, str) and summary.strip() else labels.get("alertname") or fallback
    return title[:MAX_TITLE]
