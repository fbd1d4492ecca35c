"""apps.core.gc_pause: the collector is off inside, back on after (also on error), and a nested
pause leaves it to the outer one. Its two log-intake users: tests/ingest/test_processing.py."""
from __future__ import annotations

import gc

import pytest

from apps.core.gc_pause import gc_paused


def test_the_collector_is_off_inside_and_on_after():
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_an_error_inside_turns_it_back_on():
    with pytest.raises(ZeroDivisionError):
        with gc_paused():
            1 / 0
    assert gc.isenabled()


def test_a_nested_pause_leaves_the_switch_to_the_outer_one():
    with gc_paused():
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner one did not turn it on under the outer one
    assert gc.isenabled()

