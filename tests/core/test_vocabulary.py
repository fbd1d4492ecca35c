from __future__ import annotations

from datetime import timedelta

import pytest

from apps.core.vocabulary import format_duration, parse_duration, parse_period


@pytest.mark.parametrize("text,seconds", [
    ("30s", 30), ("5m", 300), ("1h", 3600), ("1d", 86400), ("1h30m", 5400),
    ("1d2h3m4s", 93784), ("0s", 0), (" 5m ", 300), ("90", 90), (90, 90), (0, 0), (60.0, 60),
])
def test_parse(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", [
    "5 minutes", "", "m", "5M", "30m1h", "1m1m", "-5", -5, "1.5h", 1.5, True, None, [], "5mm", "٣s",
])
def test_parse_rejects_with_clear_text(bad):
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(bad)


@pytest.mark.parametrize("seconds,text", [
    (0, "0s"), (30, "30s"), (300, "5m"), (3600, "1h"), (86400, "1d"), (5400, "1h30m"),
    (90061, "1d1h1m1s"), (61, "1m1s"),
])
def test_format(seconds, text):
    assert format_duration(seconds) == text


def test_round_trip():
    for n in list(range(0, 4000)) + [86399, 86400, 86401, 7 * 86400 + 1]:
        assert parse_duration(format_duration(n)) == n


@pytest.mark.parametrize("bad", [-1, 1.5, "5m", True])
def test_format_rejects(bad):
    with pytest.raises(ValueError):
        format_duration(bad)


@pytest.mark.parametrize("text,seconds", [("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400), (60, 60)])
def test_periods(text, seconds):
    assert parse_period(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("bad", ["0", "-5m", "soon", "5w", True, 0])
def test_bad_periods(bad):
    with pytest.raises(ValueError):
        parse_period(bad)
