"""Pure arithmetic of metric rules over minute rollups: series selection, grouping, aggregation,
comparison and persistence (``for`` / ``consecutive``). No ORM; ``metric_eval`` feeds it rows.

A group's aggregation over the window, across all of its series' minute rows (each row is
``Row``): ``avg`` = mean of all samples, ``min``/``max`` = extreme sample, ``sum`` = sum of all
samples, ``count`` = number of samples, ``last`` = sum over the group's series of each series'
newest value (one series: its last value; like PromQL ``sum by (...)`` of gauges), ``rate`` = per
second increase of each series' last value from the window's first to its last minute, summed
(counter resets count as 0), ``age`` = ``now`` minus the newest value (for metrics that hold a
Unix timestamp, e.g. the last successful backup).
"""
from __future__ import annotations

import operator
from functools import lru_cache
from typing import NamedTuple, Sequence

import re2

from apps.rules.metric_spec import Matcher

OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq,
       "!=": operator.ne}


@lru_cache(maxsize=1024)
def _compiled(pattern: str):
    return re2.compile(pattern)


class Row(NamedTuple):
    minute: float  # epoch seconds of the minute's start
    count: int
    sum: float
    min: float
    max: float
    sumsq: float
    last: float
    last_ts: float


def selects(labels: dict[str, str], where: Sequence[Matcher]) -> bool:
    """Do a series' labels satisfy every matcher? A missing label reads as ""."""
    for m in where:
        value = labels.get(m.label, "")
        if m.op == "=" and value != m.value or m.op == "!=" and value == m.value:
            return False
        if m.op == "=~" and not _compiled(m.value).fullmatch(value):
            return False
    return True


def group_values(labels: dict[str, str], group_by: Sequence[str] | None) -> tuple[tuple[str, str], ...]:
    """The group a series belongs to: its ``group_by`` labels, or all of its labels."""
    if group_by is None:
        return tuple(sorted(labels.items()))
    return tuple((k, labels.get(k, "")) for k in group_by)


def in_window(minute: float, now: float, window_s: int) -> bool:
    """A minute counts when it overlaps ``(now - window_s, now]``."""
    return now - window_s - 60 < minute <= now


def aggregate(aggregation: str, series_rows: Sequence[Sequence[Row]], now: float) -> float | None:
    """The group's value (module docstring); None when the window holds no sample."""
    rows = [r for rs in series_rows for r in rs]
    if not rows:
        return None
    if aggregation == "avg":
        return sum(r.sum for r in rows) / sum(r.count for r in rows)
    if aggregation == "min":
        return min(r.min for r in rows)
    if aggregation == "max":
        return max(r.max for r in rows)
    if aggregation == "sum":
        return sum(r.sum for r in rows)
    if aggregation == "count":
        return float(sum(r.count for r in rows))
    newest = [max(rs, key=lambda r: r.last_ts) for rs in series_rows if rs]
    if aggregation == "last":
        return sum(r.last for r in newest)
    if aggregation == "age":
        return now - max(r.last for r in newest)
    if aggregation == "rate":
        total = 0.0
        for rs in series_rows:
            if len(rs) < 2:
                continue
            ordered = sorted(rs, key=lambda r: r.last_ts)
            elapsed = ordered[-1].last_ts - ordered[0].last_ts
            if elapsed > 0:
                total += max(0.0, ordered[-1].last - ordered[0].last) / elapsed
        return total
    raise ValueError(f"unknown aggregation {aggregation!r}")


def compare(value: float, op: str, threshold: float) -> bool:
    return OPS[op](value, threshold)


def persisted(*, consecutive: int, pending_since: float, now: float, for_s: int | None,
              needed: int | None) -> bool:
    """Has a violation lasted long enough to fire? ``consecutive`` counts this evaluation too;
    without ``for`` and ``consecutive`` the first violation fires."""
    if needed is not None:
        return consecutive >= needed
    if for_s is not None:
        return now - pending_since >= for_s
    return True
