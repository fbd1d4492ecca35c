"""The clock-step test hook of ``apps.core.clock`` (ALERTCENTER_CLOCK_OFFSET_FILE): off unless set,
re-read at most once a second, nonsense counts as no offset."""
from __future__ import annotations

import math
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.core import clock

pytestmark = pytest.mark.reliability


@pytest.fixture
def offset_file(tmp_path, monkeypatch):
    path = tmp_path / "offset"
    monkeypatch.setattr(clock, "OFFSET_FILE", str(path))
    monkeypatch.setitem(clock._offset, "read_at", -math.inf)
    monkeypatch.setitem(clock._offset, "seconds", 0.0)
    return path


def _skew() -> float:
    return (clock.now() - timezone.now()).total_seconds()


def test_off_unless_set(monkeypatch, tmp_path):
    (tmp_path / "offset").write_text("3600")
    monkeypatch.setattr(clock, "OFFSET_FILE", "")
    assert abs(_skew()) < 1


def test_the_offset_is_added_and_reread_at_most_once_a_second(offset_file, monkeypatch):
    offset_file.write_text("10800\n")
    assert 10799 < _skew() < 10801
    offset_file.write_text("-3600")
    assert 10799 < _skew() < 10801  # cached: a process reads the file at most once a second
    ticks = iter([1e6, 1e6 + 1.0])
    monkeypatch.setattr(clock.time, "monotonic", lambda: next(ticks))
    assert -3601 < _skew() < -3599
    assert abs(clock.now() - timezone.now() + timedelta(hours=1)) < timedelta(seconds=1)


@pytest.mark.parametrize("content", ["", "soon", "nan", "inf", "1e12"])
def test_missing_or_nonsense_offset_is_zero(offset_file, content):
    if content:
        offset_file.write_text(content)
    assert abs(_skew()) < 1
