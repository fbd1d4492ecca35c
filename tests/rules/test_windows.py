from __future__ import annotations

import json

from apps.rules.windows import add, bucket_size, count_in_window, new_state, should_fire

T0 = 1_714_564_800  # a multiple of 60 and of 300


def test_bucket_size():
    assert bucket_size(1) == 1
    assert bucket_size(60) == 1
    assert bucket_size(300) == 5
    assert bucket_size(3600) == 60
    assert bucket_size(86400) == 1440


def test_add_and_count_basic():
    state, dropped = add(None, [(T0, 1), (T0 + 1, 2), (T0 + 2.9, 3)], window_s=60, now=T0 + 3)
    assert dropped == 0
    assert count_in_window(state, T0 + 3, 60) == 6
    assert json.loads(json.dumps(state)) == state


def test_input_state_not_mutated():
    state, _ = add(None, [(T0, 1)], window_s=60, now=T0)
    snapshot = json.dumps(state)
    add(state, [(T0 + 1, 5)], window_s=60, now=T0 + 1)
    assert json.dumps(state) == snapshot


def test_bucket_roll_over_prunes_old_buckets():
    state = new_state(300)
    state, _ = add(state, [(T0 + i, 1) for i in range(0, 300, 5)], window_s=300, now=T0 + 299)
    assert count_in_window(state, T0 + 299, 300) == 60
    assert len(state["buckets"]) == 60
    state, _ = add(state, [(T0 + 400, 1)], window_s=300, now=T0 + 400)
    # Window (T0+100, T0+400]: buckets starting at T0+105 .. T0+295 plus the new one.
    assert count_in_window(state, T0 + 400, 300) == 39 + 1
    assert min(int(b) for b in state["buckets"]) > T0 + 100


def test_event_exactly_window_old_is_out():
    state, dropped = add(None, [(T0, 1)], window_s=60, now=T0 + 60)
    assert dropped == 1 and count_in_window(state, T0 + 60, 60) == 0
    state, dropped = add(None, [(T0, 1)], window_s=60, now=T0 + 59)
    assert dropped == 0 and count_in_window(state, T0 + 59, 60) == 1
    # The same event leaves the window as time passes.
    assert count_in_window(state, T0 + 60, 60) == 0


def test_edge_with_wide_buckets():
    # window 300 s, buckets 5 s: a bucket counts iff its start is after now - 300.
    state, _ = add(None, [(T0, 1), (T0 + 4, 1), (T0 + 5, 1)], window_s=300, now=T0 + 10)
    assert count_in_window(state, T0 + 299, 300) == 3
    assert count_in_window(state, T0 + 300, 300) == 1  # bucket T0 is now exactly window old
    assert count_in_window(state, T0 + 305, 300) == 0


def test_late_and_out_of_order_events_count_when_inside_window():
    state, _ = add(None, [(T0 + 50, 1)], window_s=60, now=T0 + 50)
    state, dropped = add(state, [(T0 + 10, 1), (T0 + 49, 1), (T0 + 30, 1)], window_s=60, now=T0 + 55)
    assert dropped == 0
    assert count_in_window(state, T0 + 55, 60) == 4


def test_too_old_events_are_dropped_and_reported():
    state, dropped = add(None, [(T0 - 1000, 3), (T0, 1)], window_s=60, now=T0)
    assert dropped == 3
    assert count_in_window(state, T0, 60) == 1


def test_without_now_newest_event_is_reference():
    state, dropped = add(None, [(T0, 1), (T0 + 100, 1)], window_s=60)
    assert dropped == 1
    assert state["newest"] == T0 + 100
    state, dropped = add(state, [(T0 + 41, 2), (T0 + 40, 5)], window_s=60)
    assert dropped == 5
    assert count_in_window(state, T0 + 100, 60) == 3


def test_future_events_count():
    state, _ = add(None, [(T0 + 120, 1)], window_s=60, now=T0)
    assert count_in_window(state, T0, 60) == 1


def test_window_change_rebuckets():
    state, _ = add(None, [(T0 + i, 1) for i in range(60)], window_s=60, now=T0 + 59)
    state, _ = add(state, [], window_s=600, now=T0 + 59)
    assert state["bucket_s"] == 10
    assert count_in_window(state, T0 + 59, 600) == 60


def test_zero_counts_are_ignored():
    state, dropped = add(None, [(T0, 0)], window_s=60, now=T0)
    assert dropped == 0 and state["buckets"] == {}


def test_should_fire_threshold_and_cooldown():
    assert not should_fire(19, 20, None, 600, T0)
    assert should_fire(20, 20, None, 600, T0)
    assert not should_fire(25, 20, T0, 600, T0 + 599)
    assert should_fire(25, 20, T0, 600, T0 + 600)  # cooldown over at exactly cooldown_s
    assert should_fire(25, 20, T0, 0, T0)  # no cooldown


def test_threshold_of_one_fires_at_once():
    state, _ = add(None, [(T0, 1)], window_s=60, now=T0)
    assert should_fire(count_in_window(state, T0, 60), 1, None, 300, T0)
