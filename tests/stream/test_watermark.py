"""apps/stream/watermark.py: ids released in order, holes waited for, then skipped and watched."""
from __future__ import annotations

from apps.stream.watermark import MAX_WATCHED_HOLE, advance


def test_contiguous_ids_are_released_and_the_mark_moves():
    step = advance(10, [11, 12, 13], gap_since=None, now=100.0, grace=1.0)
    assert (step.released, step.skipped, step.hwm, step.gap_since) == ([11, 12, 13], [], 13, None)


def test_a_hole_holds_later_ids_back_within_the_grace():
    step = advance(10, [11, 13, 14], gap_since=None, now=100.0, grace=1.0)
    assert (step.released, step.hwm, step.gap_since) == ([11], 11, 100.0)
    # Still within the grace on the next look: the hole's first sighting is kept, nothing more goes.
    step = advance(11, [13, 14], gap_since=100.0, now=100.5, grace=1.0)
    assert (step.released, step.hwm, step.gap_since) == ([], 11, 100.0)


def test_a_filled_hole_releases_everything_in_order():
    step = advance(11, [12, 13, 14], gap_since=100.0, now=100.5, grace=1.0)
    assert (step.released, step.skipped, step.hwm, step.gap_since) == ([12, 13, 14], [], 14, None)


def test_past_the_grace_the_hole_is_skipped_and_watched_as_late():
    step = advance(11, [14, 15, 18], gap_since=100.0, now=101.0, grace=1.0)
    # 12-13 given up (watched), 14-15 released; the new hole 16-17 starts its own wait.
    assert (step.released, step.skipped, step.hwm, step.gap_since) == ([14, 15], [12, 13], 15, 101.0)


def test_ids_at_or_below_the_mark_are_ignored_and_huge_holes_are_not_watched():
    step = advance(10, [9, 10, 11], gap_since=None, now=0.0, grace=1.0)
    assert step.released == [11]
    step = advance(10, [12 + MAX_WATCHED_HOLE], gap_since=0.0, now=5.0, grace=1.0)
    assert step.released == [12 + MAX_WATCHED_HOLE] and step.skipped == []
