"""The one place that reads the time, so tests and the chaos bench can move it.

Test hook, off unless set: ``ALERTCENTER_CLOCK_OFFSET_FILE`` names a file holding a number of
seconds (may be negative) added to every ``now()``. Each process re-reads it at most once a second,
so a test steps the clock of every process (web, workers, beat) at once by rewriting the file
(tests/reliability's clock-step scenario: the system clock cannot be changed there). A missing,
empty or unreadable file, or a value that is not a finite number within ten years, counts as 0.
Never set it in production.
"""
from __future__ import annotations

import math
import os
import time
from datetime import datetime, timedelta

from django.utils import timezone

OFFSET_FILE = os.environ.get("ALERTCENTER_CLOCK_OFFSET_FILE", "")
_MAX_OFFSET = 10 * 365 * 86400.0
_offset = {"read_at": -math.inf, "seconds": 0.0}


def _offset_seconds() -> float:
    t = time.monotonic()
    if t - _offset["read_at"] >= 1.0:
        try:
            with open(OFFSET_FILE) as f:
                seconds = float(f.read().strip() or 0)
        except (OSError, ValueError):
            seconds = 0.0
        if not math.isfinite(seconds) or abs(seconds) > _MAX_OFFSET:
            seconds = 0.0
        _offset.update(read_at=t, seconds=seconds)
    return _offset["seconds"]


def now() -> datetime:
    if not OFFSET_FILE:
        return timezone.now()
    return timezone.now() + timedelta(seconds=_offset_seconds())
