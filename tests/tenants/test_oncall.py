"""On-call arithmetic (pure: rotations are plain objects here): daily and weekly hand-offs, the
boundary instant itself, and wall-clock hand-offs across DST changes."""
from __future__ import annotations

from datetime import date, datetime, time, timezone
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from apps.tenants.oncall import current_shift, next_handoffs, on_call

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")


def rotation(period="daily", *, users=(1, 2, 3), at=time(9, 0), weekday=None, tz="UTC", start=date(2026, 3, 2)):
    return SimpleNamespace(name="primary", users=list(users), period=period, handoff_time=at, handoff_weekday=weekday,
                           timezone=tz, start_date=start)


def test_daily_rotation_hands_off_exactly_at_the_boundary():
    r = rotation()
    assert on_call(r, datetime(2026, 3, 2, 9, 0, tzinfo=UTC)) == 1
    assert on_call(r, datetime(2026, 3, 3, 8, 59, 59, 999999, tzinfo=UTC)) == 1
    assert on_call(r, datetime(2026, 3, 3, 9, 0, tzinfo=UTC)) == 2  # the hand-off instant belongs to the next
    assert on_call(r, datetime(2026, 3, 4, 23, 0, tzinfo=UTC)) == 3
    assert on_call(r, datetime(2026, 3, 5, 9, 0, tzinfo=UTC)) == 1  # wraps around
    assert on_call(r, datetime(2026, 3, 5, 0, 30, tzinfo=UTC)) == 3  # after midnight, before the hand-off


def test_before_the_first_handoff_the_first_user_is_on_call():
    r = rotation()
    assert on_call(r, datetime(2026, 2, 20, 12, 0, tzinfo=UTC)) == 1
    assert on_call(r, datetime(2026, 3, 2, 8, 59, tzinfo=UTC)) == 1
    [first, second] = next_handoffs(r, datetime(2026, 3, 1, 0, 0, tzinfo=UTC), count=2)
    assert (first.user_id, first.starts_at) == (1, datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    assert (second.user_id, second.starts_at) == (2, datetime(2026, 3, 3, 9, 0, tzinfo=UTC))


def test_weekly_rotation_on_its_weekday():
    # Start on a Wednesday; hand-off Mondays (0) at 10:00: the first shift starts Monday 9 March.
    r = rotation("weekly", users=(7, 8), at=time(10, 0), weekday=0, start=date(2026, 3, 4))
    assert on_call(r, datetime(2026, 3, 9, 9, 59, tzinfo=UTC)) == 7  # not started yet: the first user
    assert on_call(r, datetime(2026, 3, 9, 10, 0, tzinfo=UTC)) == 7
    assert on_call(r, datetime(2026, 3, 15, 23, 59, tzinfo=UTC)) == 7  # Sunday
    assert on_call(r, datetime(2026, 3, 16, 9, 59, 59, tzinfo=UTC)) == 7  # Monday, just before
    assert on_call(r, datetime(2026, 3, 16, 10, 0, tzinfo=UTC)) == 8
    assert on_call(r, datetime(2026, 3, 20, 12, 0, tzinfo=UTC)) == 8
    assert on_call(r, datetime(2026, 3, 23, 10, 0, tzinfo=UTC)) == 7
    assert on_call(r, datetime(2026, 3, 30, 10, 0, tzinfo=UTC)) == 8
    shift = current_shift(r, datetime(2026, 3, 18, 0, 0, tzinfo=UTC))
    assert (shift.index, shift.starts_at) == (1, datetime(2026, 3, 16, 10, 0, tzinfo=UTC))
    assert [(s.user_id, s.starts_at.date()) for s in next_handoffs(r, datetime(2026, 3, 18, tzinfo=UTC))] == [
        (7, date(2026, 3, 23)), (8, date(2026, 3, 30)), (7, date(2026, 4, 6))]


def test_daily_handoff_keeps_its_wall_clock_time_across_dst():
    # Berlin springs forward on 29 March 2026 (CET +1 -> CEST +2) and falls back on 25 October.
    r = rotation(users=(1, 2), tz="Europe/Berlin", start=date(2026, 3, 27))
    assert on_call(r, datetime(2026, 3, 28, 8, 0, tzinfo=UTC)) == 2  # 09:00 CET
    # 29 March 09:00 CEST is 07:00 UTC, not 08:00 UTC (24 hours after the day before).
    assert on_call(r, datetime(2026, 3, 29, 6, 59, 59, tzinfo=UTC)) == 2
    assert on_call(r, datetime(2026, 3, 29, 7, 0, tzinfo=UTC)) == 1
    assert next_handoffs(r, datetime(2026, 3, 28, 12, 0, tzinfo=UTC), count=1)[0].starts_at == datetime(
        2026, 3, 29, 9, 0, tzinfo=BERLIN)
    # After the fall-back day the hand-off is at 08:00 UTC again; the shift count has not drifted.
    assert on_call(r, datetime(2026, 10, 25, 7, 59, tzinfo=UTC)) == on_call(r, datetime(2026, 10, 24, 12, tzinfo=UTC))
    assert on_call(r, datetime(2026, 10, 25, 8, 0, tzinfo=UTC)) != on_call(r, datetime(2026, 10, 24, 12, tzinfo=UTC))


def test_handoff_inside_the_dst_gap_and_overlap():
    # 02:30 does not exist on 29 March in Berlin: the hand-off reads it with the old offset (01:30 UTC).
    r = rotation(users=(1, 2), at=time(2, 30), tz="Europe/Berlin", start=date(2026, 3, 28))
    assert on_call(r, datetime(2026, 3, 29, 1, 29, tzinfo=UTC)) == 1
    assert on_call(r, datetime(2026, 3, 29, 1, 30, tzinfo=UTC)) == 2
    # 02:30 happens twice on 25 October: the first one (00:30 UTC) hands off, the second does not.
    r = rotation(users=(1, 2), at=time(2, 30), tz="Europe/Berlin", start=date(2026, 10, 24))
    assert on_call(r, datetime(2026, 10, 25, 0, 29, tzinfo=UTC)) == 1
    assert on_call(r, datetime(2026, 10, 25, 0, 30, tzinfo=UTC)) == 2
    assert on_call(r, datetime(2026, 10, 25, 1, 30, tzinfo=UTC)) == 2  # the second 02:30
    assert on_call(r, datetime(2026, 10, 26, 1, 30, tzinfo=UTC)) == 1  # 02:30 CET the day after


def test_weekly_rotation_across_dst_in_new_york():
    # New York springs forward on Sunday 8 March 2026; hand-off Mondays 09:00 local.
    r = rotation("weekly", users=(1, 2), weekday=0, tz="America/New_York", start=date(2026, 3, 2))
    assert on_call(r, datetime(2026, 3, 2, 14, 0, tzinfo=UTC)) == 1  # 09:00 EST
    assert on_call(r, datetime(2026, 3, 9, 12, 59, tzinfo=UTC)) == 1
    assert on_call(r, datetime(2026, 3, 9, 13, 0, tzinfo=UTC)) == 2  # 09:00 EDT


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="rotation 'primary' has no users"):
        on_call(rotation(users=()), datetime(2026, 3, 2, tzinfo=UTC))
    with pytest.raises(ValueError, match="timezone-aware"):
        on_call(rotation(), datetime(2026, 3, 2))
