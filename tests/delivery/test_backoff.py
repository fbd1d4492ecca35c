from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from apps.delivery.backoff import (
    DEFAULT_SCHEDULE,
    MAX_RETRY_AFTER,
    gives_up,
    next_attempt_at,
    parse_retry_after,
    retry_delay,
)

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("n, expected", [(1, 10), (2, 30), (3, 120), (4, 600), (5, 1800), (6, 3600), (7, 3600), (50, 3600)])
def test_schedule_without_jitter(n, expected):
    assert retry_delay(n, jitter=0) == expected


def test_jitter_stays_within_bounds_and_varies():
    rng = random.Random(1)
    delays = [retry_delay(3, jitter=0.2, rng=rng) for _ in range(500)]
    assert all(96 <= d <= 144 for d in delays)
    assert len(set(delays)) > 400
    assert min(delays) < 100 and max(delays) > 140


def test_custom_schedule_last_entry_repeats():
    assert [retry_delay(n, schedule=[1, 2], jitter=0) for n in (1, 2, 3, 9)] == [1, 2, 2, 2]


@pytest.mark.parametrize("kwargs", [{"attempt_number": 0}, {"schedule": []}, {"jitter": 1.0}, {"jitter": -0.1}])
def test_retry_delay_rejects_bad_input(kwargs):
    args = {"attempt_number": 1} | kwargs
    with pytest.raises(ValueError):
        retry_delay(args.pop("attempt_number"), **args)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("120", 120.0),
        (" 5 ", 5.0),
        ("0", 0.0),
        ("999999", MAX_RETRY_AFTER),
        ("Wed, 01 Jan 2025 12:02:00 GMT", 120.0),
        ("Wed, 01 Jan 2025 11:00:00 GMT", 0.0),  # in the past
        ("Thu, 02 Jan 2025 12:00:00 GMT", MAX_RETRY_AFTER),
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("Wed, 99 Foo 2025", None),
    ],
)
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value, NOW) == expected


def test_parse_retry_after_naive_now_is_utc():
    assert parse_retry_after("Wed, 01 Jan 2025 12:00:30 GMT", NOW.replace(tzinfo=None)) == 30.0


def test_next_attempt_honours_larger_retry_after_only():
    assert next_attempt_at(1, NOW, jitter=0) == NOW + timedelta(seconds=10)
    assert next_attempt_at(1, NOW, retry_after=300, jitter=0) == NOW + timedelta(seconds=300)
    assert next_attempt_at(4, NOW, retry_after=5, jitter=0) == NOW + timedelta(seconds=600)
    assert next_attempt_at(1, NOW, retry_after=0, jitter=0) == NOW + timedelta(seconds=10)


def test_gives_up_after_max_age_but_not_before_three_retries():
    first = NOW - timedelta(hours=25)
    assert not gives_up(1, first, NOW)
    assert not gives_up(3, first, NOW)
    assert gives_up(4, first, NOW)
    assert not gives_up(10, NOW - timedelta(hours=23), NOW)
    assert gives_up(10, NOW - timedelta(hours=1), NOW, max_age=timedelta(minutes=30))


def test_default_schedule_keeps_trying_for_a_day():
    """Walk the default policy: attempts continue hourly until ~24 h, then stop."""
    rng = random.Random(7)
    first = t = NOW
    n = 1
    while True:
        nxt = next_attempt_at(n, t, rng=rng)
        if gives_up(n, first, nxt):
            break
        t, n = nxt, n + 1
    assert DEFAULT_SCHEDULE[:5] == (10, 30, 120, 600, 1800)
    assert 20 <= n <= 35
    assert timedelta(hours=22) < t - first <= timedelta(hours=24)
