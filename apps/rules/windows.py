"""Bucketed sliding-window counting on a plain, JSON-serializable dict (``WindowState.data``).

State shape: ``{"bucket_s": int, "buckets": {"<bucket start, epoch s>": count}, "newest": int}``.
Keys are strings because JSON objects (and Django's JSONField) only have string keys.

Window edge (one rule everywhere): the window at time ``now`` is ``(now - window_s, now]`` at
bucket resolution, i.e. a bucket counts iff its START is after ``now - window_s``. So an event
exactly ``window_s`` old is OUT, and with buckets wider than 1 s the oldest, partly covered
bucket is left out too (undercount of at most ``bucket_s - 1`` seconds, <= 1/60 of the window).
Buckets in the future (shipper clock ahead, already bounded by ingest's skew check) count.

Functions are pure: they return new state and never mutate their input.
"""

from __future__ import annotations

import math
from typing import Iterable, NamedTuple

BUCKETS_PER_WINDOW = 60


class AddResult(NamedTuple):
    state: dict
    dropped: int


def bucket_size(window_s: int) -> int:
    """Bucket width for ``window_s``: ``max(1, window_s // 60)``, so 60-119 buckets at most."""
    return max(1, int(window_s) // BUCKETS_PER_WINDOW)


def new_state(window_s: int) -> dict:
    return {"bucket_s": bucket_size(window_s), "buckets": {}, "newest": None}


def _start(ts: float, bucket_s: int) -> int:
    return math.floor(ts / bucket_s) * bucket_s


def _buckets(state: dict | None, bucket_s: int) -> dict[int, int]:
    """Bucket counts as ints, re-bucketed if the rule's window (and so bucket_s) changed."""
    out: dict[int, int] = {}
    if not state:
        return out
    for key, count in (state.get("buckets") or {}).items():
        start = _start(int(key), bucket_s)
        out[start] = out.get(start, 0) + int(count)
    return out


def add(
    state: dict | None,
    ts_counts: Iterable[tuple[float, int]],
    *,
    window_s: int,
    bucket_s: int | None = None,
    now: float | None = None,
) -> AddResult:
    """Add ``(epoch_seconds, count)`` pairs; return the new state and how many were dropped.

    The reference time is ``now`` when given (the worker's clock; pass it in production), else
    the newest timestamp seen so far including this batch. Late and out-of-order events still
    inside the window are counted; events whose bucket is outside it are dropped and counted
    in ``dropped``. Buckets that fell out of the window are pruned from the returned state.
    """
    bs = bucket_s or bucket_size(window_s)
    buckets = _buckets(state, bs)
    pairs = [(float(ts), int(count)) for ts, count in ts_counts if count]
    newest = state.get("newest") if state else None
    if pairs:
        batch_newest = math.floor(max(ts for ts, _ in pairs))
        newest = batch_newest if newest is None else max(int(newest), batch_newest)
    ref = now if now is not None else newest
    cutoff = None if ref is None else ref - window_s

    dropped = 0
    for ts, count in pairs:
        start = _start(ts, bs)
        if cutoff is not None and start <= cutoff:
            dropped += count
            continue
        buckets[start] = buckets.get(start, 0) + count

    if cutoff is not None:
        buckets = {b: c for b, c in buckets.items() if b > cutoff}
    return AddResult(
        {"bucket_s": bs, "buckets": {str(b): c for b, c in sorted(buckets.items())},
         "newest": newest},
        dropped,
    )


def count_in_window(state: dict | None, now: float, window_s: int) -> int:
    """Events in ``(now - window_s, now]`` at bucket resolution (future buckets included)."""
    if not state:
        return 0
    cutoff = now - window_s
    return sum(int(c) for b, c in (state.get("buckets") or {}).items() if int(b) > cutoff)


def should_fire(
    count: int, threshold: int, last_fired_at: float | None, cooldown_s: int, now: float
) -> bool:
    """True when ``count`` reached ``threshold`` and the cooldown since the last firing is over.

    The cooldown is over once exactly ``cooldown_s`` seconds have passed (``>=``).
    """
    if count < threshold:
        return False
    return last_fired_at is None or now - last_fired_at >= cooldown_s
