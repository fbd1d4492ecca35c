"""The z-score anomaly detector: pure arithmetic, shared by metric rules and ``bench/anomaly.py``.

z = (x - mean) / sigma, where x is the mean of the evaluation window and mean/sigma describe the
per-minute means of a baseline that does not overlap the window (so a spike never contaminates
its own baseline): ``previous`` = the hour before the window, ``seasonal`` = a one-hour slot centred
on the same time of day on each of the last 7 days (daily seasonality).

Guards against noise: fewer than ``min_samples`` baseline minutes -> no verdict; window value and
baseline mean both below ``floor`` -> no verdict (low-volume series); sigma is floored at
``SIGMA_FLOOR_RATIO`` x |mean| so a flat series does not alert on a rounding change.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

SIGMA_FLOOR_RATIO = 0.01
DAY_S = 86_400
SEASON_DAYS = 7


@dataclass(frozen=True, slots=True)
class Stats:
    """Running sums of a set of values: n, sum, sum of squares (combinable across series)."""

    n: int = 0
    s1: float = 0.0
    s2: float = 0.0

    @classmethod
    def of(cls, values: Iterable[float]) -> Stats:
        n = s1 = s2 = 0
        for v in values:
            n, s1, s2 = n + 1, s1 + v, s2 + v * v
        return cls(n, float(s1), float(s2))

    def __add__(self, other: Stats) -> Stats:
        return Stats(self.n + other.n, self.s1 + other.s1, self.s2 + other.s2)

    @property
    def mean(self) -> float:
        return self.s1 / self.n if self.n else 0.0

    @property
    def sigma(self) -> float:
        if self.n < 2:
            return 0.0
        return math.sqrt(max(0.0, (self.s2 - self.s1 * self.s1 / self.n) / (self.n - 1)))


@dataclass(frozen=True, slots=True)
class Verdict:
    anomalous: bool
    z: float | None = None
    mean: float | None = None
    sigma: float | None = None
    reason: str = ""


def baseline_ranges(now: float, window_s: int, mode: str) -> list[tuple[float, float]]:
    """Half-open ``[start, end)`` epoch ranges of the baseline for a window ending at ``now``."""
    start = now - window_s
    if mode == "previous":
        return [(start - 3600, start)]
    if mode == "seasonal":
        return [(now - d * DAY_S - 1800, now - d * DAY_S + 1800) for d in range(1, SEASON_DAYS + 1)]
    raise ValueError(f"unknown baseline {mode!r} (use previous or seasonal)")


def judge(x: float, baseline: Stats, *, threshold: float, direction: str, min_samples: int,
          floor: float | None) -> Verdict:
    """Is window value ``x`` anomalous against ``baseline``? See the module docstring."""
    if baseline.n < min_samples:
        return Verdict(False, reason=f"baseline has {baseline.n} minutes, min_samples is {min_samples}")
    mean, sigma = baseline.mean, baseline.sigma
    if floor is not None and x < floor and mean < floor:
        return Verdict(False, mean=mean, sigma=sigma, reason=f"below floor {floor}")
    sigma_eff = max(sigma, SIGMA_FLOOR_RATIO * abs(mean), 1e-12)
    z = (x - mean) / sigma_eff
    hit = (z >= threshold if direction == "up" else z <= -threshold if direction == "down"
           else abs(z) >= threshold)
    return Verdict(hit, z=z, mean=mean, sigma=sigma)
