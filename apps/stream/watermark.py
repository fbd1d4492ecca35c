"""Releasing committed ids in order despite transactions that commit out of id order.

Ids are handed out at INSERT but become visible at COMMIT, so id 11 may be seen before id 10. The
hub releases ids only up to the high-water mark: the last id with no hole below it. A hole is waited
for up to ``grace`` seconds (a transaction still committing); after that it is skipped (a rollback
or a very long transaction) and its ids are watched as *late*: should one still commit, it goes out
then, out of order, rather than never. Pure functions; no database, no clock of their own.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# A hole wider than this is not watched id by id (e.g. a sequence jump after a crash).
MAX_WATCHED_HOLE = 1000


@dataclass
class Advance:
    released: list[int] = field(default_factory=list)  # in id order, all above the old mark
    skipped: list[int] = field(default_factory=list)   # holes given up on: watch them as late
    hwm: int = 0
    gap_since: float | None = None                      # when the hole now blocking was first seen


def advance(hwm: int, ids: list[int], *, gap_since: float | None, now: float, grace: float) -> Advance:
    """Walk ``ids`` (ascending, all > ``hwm``, the committed ones seen now) from ``hwm`` + 1."""
    out = Advance(hwm=hwm, gap_since=None)
    expected = hwm + 1
    for id_ in ids:
        if id_ < expected:
            continue
        if id_ > expected:
            since = gap_since if gap_since is not None else now
            if now - since < grace:
                out.gap_since = since
                break
            if id_ - expected <= MAX_WATCHED_HOLE:
                out.skipped.extend(range(expected, id_))
            gap_since = None  # a later hole starts its own wait
        out.released.append(id_)
        expected = id_ + 1
    out.hwm = expected - 1
    return out
