"""The log rule kinds beyond a count threshold, in the rule-pack schema (README "Detection rules"):

- ``kind: spike``: the matching events in the last ``timeframe`` (current) against the
  ``timeframe`` before it (reference), ElastAlert's ``spike_height`` / ``spike_type`` /
  ``threshold_ref`` / ``threshold_cur`` / ``alert_on_new_data`` (``apps.rules.spike``);
- ``kind: log_anomaly``: the per-minute rate of matching events of each (tenant, plugin) against
  its own baseline, the z-score detector of metric anomaly rules (``apps.rules.log_anomaly``).

Both match log lines exactly like a log rule (``match``), so they stay ``RuleSpec`` objects (the
matcher and the engine see them like any log rule) with one extra field each. The parse helpers
take the log validator ``v`` (``apps.rules.spec._RuleValidator``) and report every problem
through it, naming the rule and the field; they return None when a value is unusable.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from apps.core.vocabulary import format_duration

LOG_KINDS: tuple[str, ...] = ("spike", "log_anomaly")
SPIKE_TYPES: tuple[str, ...] = ("up", "down", "both")
BASELINES: tuple[str, ...] = ("previous", "seasonal")
DIRECTIONS: tuple[str, ...] = ("up", "down", "both")
MAX_TIMEFRAME_S = 12 * 3600  # the window row covers two timeframes; log windows stop at 24 h
MAX_ANOMALY_WINDOW_S = 3600
MAX_CONSECUTIVE = 10_000
MAX_SPIKE_COUNT = 1_000_000

_BASE = ("id", "kind", "name", "category", "enabled", "description", "match", "severity",
         "recommended_action", "labels", "overrides")
KEYS = {
    "spike": _BASE + ("timeframe", "spike_height", "spike_type", "threshold_ref", "threshold_cur",
                      "alert_on_new_data", "group_by", "cooldown"),
    "log_anomaly": _BASE + ("window", "baseline", "threshold", "min_samples", "floor", "direction", "for",
                            "consecutive"),
}
OVERRIDE_KEYS = {"spike": ("tenant", "severity", "enabled", "cooldown"),
                 "log_anomaly": ("tenant", "severity", "enabled")}


@dataclass(frozen=True, slots=True)
class Spike:
    timeframe_s: int
    height: float
    type: str = "both"
    threshold_ref: int = 0
    threshold_cur: int = 0
    alert_on_new_data: bool = False


@dataclass(frozen=True, slots=True)
class LogAnomaly:
    window_s: int = 300
    baseline: str = "previous"
    z_threshold: float = 3.0
    min_samples: int = 30
    floor: float | None = None
    direction: str = "up"
    for_s: int | None = None
    consecutive: int | None = None


def _number(v: Any, where: str, value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        v.err(where, f"must be a finite number, got {value!r}")
        return None
    return float(value)


def _count(v: Any, where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SPIKE_COUNT:
        v.err(where, f"must be an integer 0..{MAX_SPIKE_COUNT} (events in one timeframe), got {value!r}")
        return 0
    return value


def _choice(v: Any, where: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        v.err(where, f"unknown {value!r} (use {' | '.join(choices)})")
    return value


def parse_spike(v: Any, raw: dict) -> Spike | None:
    errors = len(v.errors)
    if raw.get("timeframe") is None:
        v.err("timeframe", "required (the current window, compared with the one before it, e.g. 5m)")
        timeframe = None
    else:
        timeframe = v.duration("timeframe", raw["timeframe"], 1, MAX_TIMEFRAME_S)
    height = None
    if raw.get("spike_height") is None:
        v.err("spike_height", "required (the ratio current/reference that is a spike, e.g. 3)")
    else:
        height = _number(v, "spike_height", raw["spike_height"])
        if height is not None and not height > 1:
            v.err("spike_height", f"must be > 1 (a ratio; got {raw['spike_height']!r})")
    kind = raw.get("spike_type")
    if kind is None:
        v.err("spike_type", f"required ({' | '.join(SPIKE_TYPES)})")
    else:
        _choice(v, "spike_type", kind, SPIKE_TYPES)
    ref = _count(v, "threshold_ref", raw.get("threshold_ref", 0))
    cur = _count(v, "threshold_cur", raw.get("threshold_cur", 0))
    new_data = v.boolean("alert_on_new_data", raw.get("alert_on_new_data", False))
    if len(v.errors) > errors:
        return None
    return Spike(timeframe_s=timeframe, height=height, type=kind, threshold_ref=ref, threshold_cur=cur,
                 alert_on_new_data=new_data)


def parse_log_anomaly(v: Any, raw: dict) -> LogAnomaly | None:
    errors = len(v.errors)

    def opt(key: str, default: Any) -> Any:
        value = raw.get(key)
        return default if value is None else value

    window = v.duration("window", opt("window", "5m"), 60, MAX_ANOMALY_WINDOW_S)
    if isinstance(window, int) and window % 60:
        v.err("window", f"{format_duration(window)} is not whole minutes (rates are counted per minute)")
    baseline = opt("baseline", "previous")
    if baseline not in BASELINES:
        v.err("baseline", f"unknown {baseline!r} (use previous: the hour before the window, or seasonal: "
                          "the same hour on each of the last 7 days)")
    z = _number(v, "threshold", opt("threshold", 3))
    if z is not None and not 0 < z <= 100:
        v.err("threshold", f"{z:g} out of range (a z-score in (0, 100], e.g. 3)")
    n = opt("min_samples", 30)
    if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= 100_000:
        v.err("min_samples", f"must be an integer 2..100000 (baseline minutes needed), got {n!r}")
    floor = None if raw.get("floor") is None else _number(v, "floor", raw["floor"])
    if floor is not None and floor < 0:
        v.err("floor", f"must be >= 0 (events per minute), got {floor:g}")
    direction = _choice(v, "direction", opt("direction", "up"), DIRECTIONS)
    for_s = consecutive = None
    if raw.get("for") is not None and raw.get("consecutive") is not None:
        v.err("for", "give either for (a duration) or consecutive (evaluations), not both")
    if raw.get("for") is not None:
        for_s = v.duration("for", raw["for"], 0, 24 * 3600)
    if raw.get("consecutive") is not None:
        consecutive = raw["consecutive"]
        if isinstance(consecutive, bool) or not isinstance(consecutive, int) or not 1 <= consecutive <= MAX_CONSECUTIVE:
            v.err("consecutive", f"must be an integer 1..{MAX_CONSECUTIVE} (evaluations in a row), got {consecutive!r}")
    if len(v.errors) > errors:
        return None
    return LogAnomaly(window_s=window, baseline=baseline, z_threshold=z, min_samples=n, floor=floor,
                      direction=direction, for_s=for_s, consecutive=consecutive)


def spike_to_dict(s: Spike) -> dict[str, Any]:
    d: dict[str, Any] = {"timeframe": format_duration(s.timeframe_s), "spike_height": s.height,
                         "spike_type": s.type}
    if s.threshold_ref:
        d["threshold_ref"] = s.threshold_ref
    if s.threshold_cur:
        d["threshold_cur"] = s.threshold_cur
    if s.alert_on_new_data:
        d["alert_on_new_data"] = True
    return d


def log_anomaly_to_dict(a: LogAnomaly) -> dict[str, Any]:
    d: dict[str, Any] = {"window": format_duration(a.window_s), "baseline": a.baseline, "threshold": a.z_threshold,
                         "min_samples": a.min_samples, "direction": a.direction}
    if a.floor is not None:
        d["floor"] = a.floor
    if a.for_s is not None:
        d["for"] = format_duration(a.for_s)
    if a.consecutive is not None:
        d["consecutive"] = a.consecutive
    return d
