"""The words every app shares, written once: severities and their order, event types, delivery
states, log levels, durations, the units of an epoch time.

Apps import these instead of keeping copies (five copies of the severity list drifted apart once
already). Values are stored in the database and sent to tenants, so they never change; labels are
only for humans. Nothing here touches the database.
"""
from __future__ import annotations

import re
from datetime import timedelta

from django.db import models

# --------------------------------------------------------------------------- severities


class Severity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"
    EMERGENCY = "emergency", "Emergency"


# Least to most severe: the order "severity at least X" and the console's sorting use.
SEVERITIES: tuple[str, ...] = tuple(Severity.values)
SEVERITY_RANK: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}


def severity_rank(severity: str) -> int:
    """0 (info) .. 3 (emergency); an unknown value ranks as info rather than failing a send."""
    return SEVERITY_RANK.get(severity, 0)


# --------------------------------------------------------------------------- alert sources


class AlertSource(models.TextChoices):
    """Where an alert came from; lifecycle, silences, routing and the console treat all alike."""

    LOG_RULE = "log_rule", "Log rule"
    METRIC_RULE = "metric_rule", "Metric rule"
    ALERTMANAGER = "alertmanager", "Prometheus Alertmanager"
    GRAFANA = "grafana", "Grafana"
    EVENT = "event", "Event API"
    HEARTBEAT = "heartbeat", "Heartbeat"
    SYSTEM = "system", "Alert Center itself"


# --------------------------------------------------------------------------- alert events

EVENT_TRIGGERED = "alert.triggered"
EVENT_UPDATED = "alert.updated"
EVENT_ESCALATED = "alert.escalated"
# What tenants can subscribe an endpoint to.
EVENT_TYPES: tuple[str, ...] = (EVENT_TRIGGERED, EVENT_UPDATED, EVENT_ESCALATED)
# Events that notify a tenant of an alert: their deliveries decide the alert's delivery state and
# are the ones sent by fallback when the webhook keeps failing. alert.updated only informs.
NOTIFY_EVENTS: tuple[str, ...] = (EVENT_TRIGGERED, EVENT_ESCALATED)
# Not subscribable: an operator's manual email/SMS, and an endpoint's self-check.
EVENT_MANUAL = "alert.manual"
EVENT_TEST = "webhook.test"

# --------------------------------------------------------------------------- delivery states


class DeliveryState(models.TextChoices):
    """One delivery row's state (one message to one destination)."""

    PENDING = "PENDING", "Pending"
    SENDING = "SENDING", "Sending"
    DELIVERED = "DELIVERED", "Delivered"
    FAILED = "FAILED", "Failed"
    # Still retried on the webhook schedule, and the alert went out by fallback meanwhile.
    DOWNGRADED = "DOWNGRADED", "Downgraded (fallback sent, still retrying)"


class AlertDeliveryState(models.TextChoices):
    """An alert's delivery state: its webhook deliveries summed up (no SENDING: in flight is PENDING)."""

    NONE = "NONE", "No subscribed endpoint"
    PENDING = "PENDING", "Pending"
    DELIVERED = "DELIVERED", "Delivered"
    FAILED = "FAILED", "Failed"
    DOWNGRADED = "DOWNGRADED", "Downgraded to fallback"


# --------------------------------------------------------------------------- log levels

LEVELS: tuple[str, ...] = (
    "TRACE", "DEBUG", "INFO", "NOTICE", "WARNING",
    "ERROR", "CRITICAL", "FATAL", "ALERT", "EMERGENCY",
)
# Spaced numbers leave room for levels in between without renumbering stored rows.
LEVEL_NUMBERS: dict[str, int] = {name: (i + 1) * 10 for i, name in enumerate(LEVELS)}

_LEVEL_ALIASES: dict[str, str] = {name.lower(): name for name in LEVELS}
_LEVEL_ALIASES.update({
    "warn": "WARNING", "err": "ERROR", "crit": "CRITICAL", "panic": "FATAL",
    "emerg": "EMERGENCY", "information": "INFO", "informational": "INFO",
})
# RFC 5424 severities; ALERT sits between FATAL and EMERGENCY in our ordering.
_SYSLOG_SEVERITIES: dict[int, str] = {
    0: "EMERGENCY", 1: "ALERT", 2: "CRITICAL", 3: "ERROR",
    4: "WARNING", 5: "NOTICE", 6: "INFO", 7: "DEBUG",
}


def parse_level(value: object) -> str:
    """Canonical level name for a name/alias (case-insensitive) or a syslog severity 0-7.

    Raises ``ValueError`` with a message naming the bad value. Shared by ingest and rule validation.
    """
    if isinstance(value, bool):
        raise ValueError(f"unknown level {value!r}")
    if isinstance(value, int):
        if value in _SYSLOG_SEVERITIES:
            return _SYSLOG_SEVERITIES[value]
        raise ValueError(f"unknown level {value!r} (syslog severities are 0-7)")
    if isinstance(value, str):
        key = value.strip().lower()
        if key in _LEVEL_ALIASES:
            return _LEVEL_ALIASES[key]
        if key.isdigit() and key.isascii() and int(key) in _SYSLOG_SEVERITIES:
            return _SYSLOG_SEVERITIES[int(key)]
    raise ValueError(f"unknown level {value!r}")


# Tenant and plugin ids (63 characters: the length of Tenant.slug and Plugin.slug).
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")

# --------------------------------------------------------------------------- durations
# One spelling everywhere (rule packs, silences, suppress, --since): "30s", "5m", "1h", "1d",
# "1h30m", or a number of seconds.

DURATION_UNITS: dict[str, int] = {"d": 86400, "h": 3600, "m": 60, "s": 1}
# Units largest first and at most once: "1h30m" is fine, "30m1h" and "1m1m" are almost certainly
# typos, and refusing them keeps one spelling per value (which makes rule export round-trip).
_DURATION_RE = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", re.ASCII)
_DURATION_HINT = "use seconds or units like 30s, 5m, 1h, 1d, 1h30m"


def parse_duration(value: str | int) -> int:
    """Return ``value`` as whole seconds (>= 0).

    Accepts a non-negative int, a string of digits (seconds) or unit groups d/h/m/s in that order.
    Raises ``ValueError("bad duration '...' (...)")`` for anything else, including bools and
    non-integral floats (a float that is a whole number, e.g. YAML ``60.0``, is accepted); callers
    prefix the field the value came from.
    """
    if isinstance(value, bool):
        raise ValueError(f"bad duration {value!r} ({_DURATION_HINT})")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"bad duration '{value}' (must not be negative)")
        return value
    if not isinstance(value, str):
        raise ValueError(f"bad duration {value!r} ({_DURATION_HINT})")
    text = value.strip()
    if text.isdigit() and text.isascii():
        return int(text)
    m = _DURATION_RE.fullmatch(text)
    if not text or m is None or not any(m.groups()):
        raise ValueError(f"bad duration '{value}' ({_DURATION_HINT})")
    return sum(int(g) * size for g, size in zip(m.groups(), DURATION_UNITS.values()) if g)


def parse_period(value: str | int) -> timedelta:
    """``parse_duration`` for a period that must be positive (silences, suppress, --since)."""
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"bad duration '{value}' (must be positive)")
    return timedelta(seconds=seconds)


def format_duration(seconds: int) -> str:
    """Shortest canonical spelling of ``seconds``: 300 -> "5m", 5400 -> "1h30m", 0 -> "0s"."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
        raise ValueError(f"cannot format duration {seconds!r}: need an int >= 0")
    if seconds == 0:
        return "0s"
    parts = []
    rest = seconds
    for unit, size in DURATION_UNITS.items():
        n, rest = divmod(rest, size)
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts)


# --------------------------------------------------------------------------- epoch times


def epoch_seconds(value: int | float) -> int | float:
    """A client's epoch time in seconds, its unit told by its magnitude: past 1e11 it is
    milliseconds (1e11 s is the year 5138, 1e11 ms is 1973), past 1e14 microseconds, past 1e17
    nanoseconds. How the logs' and the metrics' ``ts`` read a number."""
    if value > 1e17:
        return value / 1e9
    if value > 1e14:
        return value / 1e6
    if value > 1e11:
        return value / 1e3
    return value
