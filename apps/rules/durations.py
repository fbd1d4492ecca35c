"""Durations used by rule packs: "30s", "5m", "1h", "1d", "1h30m", or a number of seconds.

Contract: ``parse_duration`` returns whole seconds (>= 0) and raises ``ValueError`` whose
text starts with ``bad duration '<value>'`` so callers can prefix the rule and field.
``format_duration`` is its inverse on canonical output: ``parse_duration(format_duration(n)) == n``
for every ``n >= 0``, which is what makes rule export round-trip.
"""

from __future__ import annotations

import re

UNITS: dict[str, int] = {"d": 86400, "h": 3600, "m": 60, "s": 1}

# Units must appear largest first and at most once: "1h30m" is fine, "30m1h" and "1m1m" are
# almost certainly typos, and refusing them keeps one spelling per value.
_DURATION_RE = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", re.ASCII)
_HINT = "use seconds or units like 30s, 5m, 1h, 1d, 1h30m"


def parse_duration(value: str | int) -> int:
    """Return ``value`` as whole seconds.

    Accepts a non-negative int, a string of digits (seconds) or unit groups d/h/m/s in that order.
    Raises ``ValueError("bad duration '...' (...)")`` for anything else, including bools and
    non-integral floats (a float that is a whole number, e.g. YAML ``60.0``, is accepted).
    """
    if isinstance(value, bool):
        raise ValueError(f"bad duration {value!r} ({_HINT})")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"bad duration '{value}' (must not be negative)")
        return value
    if not isinstance(value, str):
        raise ValueError(f"bad duration {value!r} ({_HINT})")
    text = value.strip()
    if text.isdigit() and text.isascii():
        return int(text)
    m = _DURATION_RE.fullmatch(text)
    if not text or m is None or not any(m.groups()):
        raise ValueError(f"bad duration '{value}' ({_HINT})")
    return sum(int(g) * size for g, size in zip(m.groups(), UNITS.values()) if g)


def format_duration(seconds: int) -> str:
    """Shortest canonical spelling of ``seconds``: 300 -> "5m", 5400 -> "1h30m", 0 -> "0s"."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
        raise ValueError(f"cannot format duration {seconds!r}: need an int >= 0")
    if seconds == 0:
        return "0s"
    parts = []
    rest = seconds
    for unit, size in UNITS.items():
        n, rest = divmod(rest, size)
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts)
