"""What a ping may set, parsed from the query string and an optional JSON object body (pure)."""
from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from apps.core.errors import Unprocessable
from apps.core.vocabulary import ID_RE, SEVERITIES, format_duration, parse_duration

FIELDS = ("timeout", "grace", "severity", "plugin")


@dataclass(frozen=True)
class PingSpec:
    """The settings one ping names; None: keep the stored value (defaults on the first ping)."""

    timeout: int | None = None
    grace: int | None = None
    severity: str | None = None
    plugin: str | None = None


def _refuse(field: str, message: str) -> Unprocessable:
    return Unprocessable(f"{field}: {message}", code="invalid_heartbeat", details={"field": field})


def check_name(name: str) -> str:
    if not ID_RE.fullmatch(name):
        raise _refuse("name", f"{name[:80]!r} is not a heartbeat name (1-63 letters, digits, '_', '.', '-', "
                              "starting with a letter or digit)")
    return name


def _seconds(field: str, value: object, low: int, high: int) -> int:
    try:
        seconds = parse_duration(value)  # type: ignore[arg-type]
    except ValueError as exc:
        raise _refuse(field, str(exc)) from None
    if not low <= seconds <= high:
        raise _refuse(field, f"{format_duration(seconds)} is out of bounds ({format_duration(low)} to "
                             f"{format_duration(high)})")
    return seconds


def parse_ping(query: dict[str, str], body: dict) -> PingSpec:
    """Merge the query string and the body (a key given in both must agree) and check each value.

    Raises Unprocessable (422) naming the field: unknown keys, a bad duration, a timeout outside
    HEARTBEAT_MIN_TIMEOUT..HEARTBEAT_MAX_TIMEOUT, a grace over HEARTBEAT_MAX_TIMEOUT, an unknown
    severity, a malformed plugin id.
    """
    unknown = sorted((set(query) - {"tenant"} | set(body)) - set(FIELDS))
    if unknown:
        raise _refuse(unknown[0], f"unknown parameter; a ping may set {', '.join(FIELDS)}")
    merged: dict[str, object] = {}
    for key in FIELDS:
        if key in query and key in body and str(body[key]) != query[key]:
            raise _refuse(key, f"given twice with different values ({query[key]!r} in the URL, {body[key]!r} "
                               "in the body)")
        if key in body or key in query:
            merged[key] = body[key] if key in body else query[key]
    timeout = grace = None
    if "timeout" in merged:
        timeout = _seconds("timeout", merged["timeout"], settings.HEARTBEAT_MIN_TIMEOUT, settings.HEARTBEAT_MAX_TIMEOUT)
    if "grace" in merged:
        grace = _seconds("grace", merged["grace"], 0, settings.HEARTBEAT_MAX_TIMEOUT)
    severity = merged.get("severity")
    if severity is not None and severity not in SEVERITIES:
        raise _refuse("severity", f"unknown severity {severity!r}; one of {', '.join(SEVERITIES)}")
    plugin = merged.get("plugin")
    if plugin is not None and not (isinstance(plugin, str) and ID_RE.fullmatch(plugin)):
        raise _refuse("plugin", f"{str(plugin)[:80]!r} is not a plugin id")
    return PingSpec(timeout=timeout, grace=grace, severity=severity, plugin=plugin)  # type: ignore[arg-type]
