"""Retry timing for deliveries: a schedule with jitter, ``Retry-After`` and a give-up rule.

Pure functions (no clock, no randomness of their own: ``now`` and ``rng`` are passed in) so the
policy is unit-testable and the same in every worker. Defaults follow DESIGN.md 3.5: 10 s, 30 s,
2 min, 10 min, 30 min, then hourly; give up after 24 h, but never before 3 retries.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

DEFAULT_SCHEDULE: tuple[int, ...] = (10, 30, 120, 600, 1800, 3600)
DEFAULT_JITTER = 0.2
DEFAULT_MAX_AGE = timedelta(hours=24)
MIN_ATTEMPTS = 4  # the first attempt + at least 3 retries, whatever max_age says
MAX_RETRY_AFTER = 3600.0  # a receiver cannot park a delivery for longer than an hour per attempt


def retry_delay(
    attempt_number: int,
    *,
    schedule: Sequence[int] = DEFAULT_SCHEDULE,
    jitter: float = DEFAULT_JITTER,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait after failed attempt ``attempt_number`` (1-based) before the next one.

    ``schedule[n-1]`` (the last entry repeats) scaled by a uniform factor in ``[1-jitter, 1+jitter]``
    so retries of many deliveries failing together do not hit the receiver in lockstep.
    Raises ``ValueError`` for ``attempt_number < 1``, an empty schedule or jitter outside [0, 1).
    """
    if attempt_number < 1:
        raise ValueError(f"attempt_number must be >= 1, got {attempt_number}")
    if not schedule:
        raise ValueError("retry schedule is empty")
    if not 0 <= jitter < 1:
        raise ValueError(f"jitter must be in [0, 1), got {jitter}")
    base = float(schedule[min(attempt_number, len(schedule)) - 1])
    factor = 1.0 + (rng or random).uniform(-jitter, jitter) if jitter else 1.0
    return max(0.0, base * factor)


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)


def parse_retry_after(value: str | None, now: datetime, *, cap: float = MAX_RETRY_AFTER) -> float | None:
    """Parse a ``Retry-After`` header (delta-seconds or HTTP-date) into seconds from ``now``.

    Returns None for a missing or unparsable value (the caller then uses its own schedule), 0 for a
    date in the past, and at most ``cap`` seconds.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        seconds = float(int(text))
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None:
            return None
        seconds = (_aware(when) - _aware(now)).total_seconds()
    return min(max(seconds, 0.0), cap)


def next_attempt_at(
    attempt_number: int,
    now: datetime,
    *,
    retry_after: float | None = None,
    schedule: Sequence[int] = DEFAULT_SCHEDULE,
    jitter: float = DEFAULT_JITTER,
    rng: random.Random | None = None,
) -> datetime:
    """When to retry after failed attempt ``attempt_number``: the schedule, or ``retry_after`` (seconds,
    already parsed and capped) when the receiver asked for a longer wait. Never earlier than the
    schedule, so a ``Retry-After: 0`` cannot turn into a tight loop."""
    delay = retry_delay(attempt_number, schedule=schedule, jitter=jitter, rng=rng)
    if retry_after is not None and retry_after > delay:
        delay = retry_after
    return now + timedelta(seconds=delay)


def gives_up(
    attempt_number: int,
    first_attempt_at: datetime,
    now: datetime,
    max_age: timedelta = DEFAULT_MAX_AGE,
    *,
    min_attempts: int = MIN_ATTEMPTS,
) -> bool:
    """True when no further attempt should be made after failed attempt ``attempt_number``.

    That is when at least ``min_attempts`` were made and ``now`` (pass the planned next-attempt time
    to stop before exceeding the window) is ``max_age`` or more after the first attempt.
    """
    if attempt_number < min_attempts:
        return False
    return _aware(now) - _aware(first_attempt_at) >= max_age
