"""On-call arithmetic: who of a rotation is on call at an instant, and when the next hand-offs are.

Pure functions, no ORM (they read a rotation's fields only). Shifts are counted in wall-clock
dates of the rotation's time zone, never in 24-hour blocks: a daily 09:00 hand-off stays at 09:00
local across a DST change (the day in between is 23 or 25 hours long). A hand-off time is turned
into an instant with ``fold=0``: in the spring-forward gap (02:30 that does not exist) it reads
the wall time with the pre-change offset (so 03:30 new time); in the fall-back overlap it is the
first of the two 02:30s, and the second one does not hand off again.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

DAILY, WEEKLY = "daily", "weekly"


@dataclass(frozen=True)
class Shift:
    user_id: int
    starts_at: datetime  # aware, in the rotation's time zone
    index: int  # shifts since the rotation started (0 = the first user's first shift)


def _step(rotation: Any) -> int:
    return 7 if rotation.period == WEEKLY else 1


def _instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, at, tzinfo=tz)  # fold=0: see the module docstring


def _anchor(rotation: Any) -> date:
    """The date of the first hand-off: start_date, or for a weekly rotation the first hand-off
    weekday on or after it."""
    start = rotation.start_date
    if rotation.period != WEEKLY:
        return start
    return start + timedelta(days=(rotation.handoff_weekday - start.weekday()) % 7)


def _shift_date(rotation: Any, at: datetime, tz: ZoneInfo) -> date:
    """The date whose hand-off started the shift running at ``at`` (may lie before the anchor)."""
    day = at.astimezone(tz).date()
    if rotation.period == WEEKLY:
        day -= timedelta(days=(day.weekday() - rotation.handoff_weekday) % 7)
    if _instant(day, rotation.handoff_time, tz) > at:
        day -= timedelta(days=_step(rotation))
    return day


def current_shift(rotation: Any, at: datetime) -> Shift:
    """The shift running at ``at`` (aware). Before the first hand-off the first user is on call.

    Raises ValueError for a rotation without users or a naive ``at``.
    """
    if not rotation.users:
        raise ValueError(f"rotation {rotation.name!r} has no users")
    if at.tzinfo is None:
        raise ValueError("at must be timezone-aware")
    tz = ZoneInfo(rotation.timezone)
    anchor = _anchor(rotation)
    day = max(_shift_date(rotation, at, tz), anchor)
    index = (day - anchor).days // _step(rotation)
    return Shift(rotation.users[index % len(rotation.users)], _instant(day, rotation.handoff_time, tz), index)


def on_call(rotation: Any, at: datetime) -> int:
    """The id of the user on call in ``rotation`` at ``at`` (see ``current_shift``)."""
    return current_shift(rotation, at).user_id


def next_handoffs(rotation: Any, at: datetime, count: int = 3) -> list[Shift]:
    """The ``count`` shifts that start after ``at``, in order."""
    tz = ZoneInfo(rotation.timezone)
    shift = current_shift(rotation, at)
    day = shift.starts_at.date()
    out = []
    index = shift.index
    if shift.starts_at > at:  # the rotation has not started: its first hand-off is the next one
        day -= timedelta(days=_step(rotation))
        index -= 1
    for _ in range(count):
        day += timedelta(days=_step(rotation))
        index += 1
        out.append(Shift(rotation.users[index % len(rotation.users)], _instant(day, rotation.handoff_time, tz), index))
    return out
