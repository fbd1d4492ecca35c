"""``--since 24h`` parsing shared by the delivery commands."""
from __future__ import annotations

import re
from datetime import timedelta

from django.core.management.base import CommandError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str) -> timedelta:
    """'90s', '15m', '24h', '7d' -> timedelta; CommandError naming the value otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", text or "")
    if not m:
        raise CommandError(f"--since: expected a duration like 30m, 24h or 7d, got {text!r}")
    return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])
