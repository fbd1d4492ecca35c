"""Metric rules in the rule-pack schema: ``kind: threshold | anomaly | absence`` (README "Metrics and
metric rules"). A rule without ``kind`` is a log rule (``apps.rules.spec``), unchanged.

Contract: same as log rules. ``parse_metric_rule`` returns a frozen ``MetricRuleSpec`` or reports
every problem through the validator, each naming the rule and the field; unknown keys are errors;
``metric_rule_to_dict`` writes the canonical mapping that parses back equal.

Series selection: ``metric`` (a Prometheus metric name) and ``where`` (label -> value; a value
starting with ``=~`` is an RE2 pattern matched against the whole label value, ``!=`` means "not
equal", a leading ``=`` is an explicit "equal"). ``group_by`` (label names) makes one alert per
group; without it each series is its own group.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from apps.core.vocabulary import ID_RE, format_duration
from apps.rules.matcher import pattern_error

METRIC_KINDS: tuple[str, ...] = ("threshold", "anomaly", "absence")
AGGREGATIONS: tuple[str, ...] = ("avg", "min", "max", "sum", "count", "last", "rate", "age")
OPERATORS: tuple[str, ...] = (">", ">=", "<", "<=", "==", "!=")
BASELINES: tuple[str, ...] = ("previous", "seasonal")
DIRECTIONS: tuple[str, ...] = ("up", "down", "both")
METRIC_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,199}")
LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]{0,99}")
MAX_WHERE = 20
MAX_CONSECUTIVE = 10_000
MAX_METRIC_WINDOW_S = 24 * 3600
MAX_ABSENCE_S = 7 * 24 * 3600

_COMMON = ("id", "kind", "name", "category", "enabled", "description", "metric", "where", "group_by",
           "severity", "recommended_action", "labels", "overrides")
_KEYS = {
    "threshold": _COMMON + ("aggregation", "window", "op", "value", "for", "consecutive", "divide_by"),
    "anomaly": _COMMON + ("window", "baseline", "threshold", "min_samples", "floor", "direction", "for",
                          "consecutive"),
    "absence": _COMMON + ("for",),
}
_OVERRIDE_KEYS = ("tenant", "severity", "enabled")


@dataclass(frozen=True, slots=True)
class Matcher:
    label: str
    op: str  # "=", "!=", "=~"
    value: str

    def text(self) -> str:
        return self.value if self.op == "=" else f"{self.op}{self.value}"


@dataclass(frozen=True, slots=True)
class MetricOverride:
    tenant: str
    severity: str | None = None
    enabled: bool | None = None


@dataclass(frozen=True, slots=True)
class MetricRuleSpec:
    """One metric rule. Fields unused by a kind keep their defaults."""

    id: str
    kind: str
    name: str
    category: str
    metric: str
    severity: str
    where: tuple[Matcher, ...] = ()
    group_by: tuple[str, ...] | None = None  # None: one group per series
    window_s: int = 300
    aggregation: str = "avg"
    op: str = ">"
    value: float = 0.0
    divide_by: str | None = None
    for_s: int | None = None
    consecutive: int | None = None
    baseline: str = "previous"
    z_threshold: float = 3.0
    min_samples: int = 30
    floor: float | None = None
    direction: str = "both"
    enabled: bool = True
    description: str = ""
    recommended_action: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    overrides: tuple[MetricOverride, ...] = ()

    def for_tenant(self, tenant: str) -> MetricRuleSpec:
        for o in self.overrides:
            if o.tenant == tenant:
                return replace(self, severity=o.severity or self.severity,
                               enabled=self.enabled if o.enabled is None else o.enabled, overrides=())
        return replace(self, overrides=())


def parse_metric_rule(v: Any) -> MetricRuleSpec | None:
    """Validate ``v.raw`` (a mapping with a metric ``kind``) with the log validator ``v``'s helpers."""
    raw: dict = v.raw
    kind = raw.get("kind")
    keys = _KEYS[kind]
    for key in raw:
        if key not in keys:
            v.err(str(key), f"unknown key for kind {kind!r} (known: {', '.join(keys)})")

    def opt(key: str, default: Any) -> Any:
        value = raw.get(key)
        return default if value is None else value

    rid = v.text("id", raw.get("id"), 64)
    if rid is not None and not ID_RE.fullmatch(rid):
        v.err("id", f"invalid {rid!r}: use 1-64 letters, digits, '_', '.', '-'")
    fields: dict[str, Any] = dict(
        id=rid, kind=kind, name=v.text("name", raw.get("name"), 200),
        category=v.text("category", opt("category", "metrics"), 64),
        metric=_metric_name(v, "metric", raw.get("metric")),
        severity=v.severity("severity", raw.get("severity"), required=True),
        where=_where(v, opt("where", {})), group_by=_group_by(v, raw.get("group_by")),
        enabled=v.boolean("enabled", opt("enabled", True)),
        description=v.text("description", opt("description", ""), 2000, allow_empty=True),
        recommended_action=v.text("recommended_action", opt("recommended_action", ""), 2000, allow_empty=True),
        labels=v.labels(opt("labels", {})), overrides=_overrides(v, opt("overrides", [])))
    if kind == "threshold":
        fields.update(_threshold_fields(v, raw))
    elif kind == "anomaly":
        fields.update(_anomaly_fields(v, raw))
    else:
        if raw.get("for") is None:
            v.err("for", "required (how long a series may stay silent, e.g. 10m)")
        else:
            fields["for_s"] = v.duration("for", raw["for"], 60, MAX_ABSENCE_S)
    if v.errors:
        return None
    return MetricRuleSpec(**fields)


def _threshold_fields(v: Any, raw: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    agg = raw.get("aggregation", "avg")
    if agg not in AGGREGATIONS:
        v.err("aggregation", f"unknown {agg!r} (use {' | '.join(AGGREGATIONS)})")
    out["aggregation"] = agg
    out["window_s"] = v.duration("window", raw.get("window", "5m"), 60, MAX_METRIC_WINDOW_S)
    op = raw.get("op")
    if op is None:
        v.err("op", f"required (one of {' '.join(OPERATORS)})")
    elif op not in OPERATORS:
        v.err("op", f"unknown operator {op!r} (use {' '.join(OPERATORS)})")
    out["op"] = op
    if "value" not in raw:
        v.err("value", "required (the number the aggregation is compared with)")
    elif agg == "age" and isinstance(raw["value"], str):
        out["value"] = float(v.duration("value", raw["value"], 0, None) or 0)  # "26h" for an age
    else:
        out["value"] = _number(v, "value", raw["value"])
    if raw.get("divide_by") is not None:
        out["divide_by"] = _metric_name(v, "divide_by", raw["divide_by"])
        if not raw.get("group_by"):
            v.err("divide_by", "needs group_by (the labels that pair a series with its divisor)")
    out.update(_persistence(v, raw))
    return out


def _anomaly_fields(v: Any, raw: dict) -> dict[str, Any]:
    out: dict[str, Any] = {"window_s": v.duration("window", raw.get("window", "5m"), 60, 3600)}
    baseline = raw.get("baseline", "previous")
    if baseline not in BASELINES:
        v.err("baseline", f"unknown {baseline!r} (use previous: the hour before the window, or seasonal: "
                          "the same hour on each of the last 7 days)")
    out["baseline"] = baseline
    z = _number(v, "threshold", raw.get("threshold", 3))
    if z is not None and not 0 < z <= 100:
        v.err("threshold", f"{z} out of range (a z-score in (0, 100], e.g. 3)")
    out["z_threshold"] = z
    n = raw.get("min_samples", 30)
    if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= 100_000:
        v.err("min_samples", f"must be an integer 2..100000 (baseline minutes needed), got {n!r}")
    out["min_samples"] = n
    if raw.get("floor") is not None:
        out["floor"] = _number(v, "floor", raw["floor"])
    direction = raw.get("direction", "both")
    if direction not in DIRECTIONS:
        v.err("direction", f"unknown {direction!r} (use {' | '.join(DIRECTIONS)})")
    out["direction"] = direction
    out.update(_persistence(v, raw))
    return out


def _persistence(v: Any, raw: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if raw.get("for") is not None and raw.get("consecutive") is not None:
        v.err("for", "give either for (a duration) or consecutive (evaluations), not both")
    if raw.get("for") is not None:
        out["for_s"] = v.duration("for", raw["for"], 0, MAX_METRIC_WINDOW_S)
    if raw.get("consecutive") is not None:
        n = raw["consecutive"]
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CONSECUTIVE:
            v.err("consecutive", f"must be an integer 1..{MAX_CONSECUTIVE} (evaluations in a row), got {n!r}")
        out["consecutive"] = n
    return out


def _number(v: Any, where: str, value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value in (
            float("inf"), float("-inf")):
        v.err(where, f"must be a finite number, got {value!r}")
        return None
    return float(value)


def _metric_name(v: Any, where: str, value: Any) -> str | None:
    if value is None:
        v.err(where, "required (a metric name, e.g. node_load1)")
        return None
    if not isinstance(value, str) or not METRIC_NAME_RE.fullmatch(value):
        v.err(where, f"invalid metric name {value!r} (Prometheus names: [a-zA-Z_:][a-zA-Z0-9_:]*)")
        return None
    return value


def _where(v: Any, value: Any) -> tuple[Matcher, ...]:
    if not isinstance(value, dict):
        v.err("where", f"must be a mapping of label -> value, got {type(value).__name__}")
        return ()
    if len(value) > MAX_WHERE:
        v.err("where", f"{len(value)} matchers, at most {MAX_WHERE} allowed")
    out = []
    for label, text in value.items():
        if not isinstance(label, str) or not LABEL_NAME_RE.fullmatch(label):
            v.err("where", f"invalid label name {label!r}")
            continue
        if not isinstance(text, (str, int, float)) or isinstance(text, bool):
            v.err(f"where.{label}", f"must be a string, got {text!r}")
            continue
        text = str(text)
        for op in ("=~", "!=", "="):
            if text.startswith(op):
                out.append(Matcher(label, op, text[len(op):]))
                break
        else:
            out.append(Matcher(label, "=", text))
        if out[-1].op == "=~":
            problem = pattern_error(out[-1].value)
            if problem:
                v.err(f"where.{label}", problem)
    return tuple(sorted(out, key=lambda m: m.label))


def _group_by(v: Any, value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        v.err("group_by", f"must be a list of label names, got {type(value).__name__}")
        return None
    for i, item in enumerate(value):
        if not isinstance(item, str) or not LABEL_NAME_RE.fullmatch(item):
            v.err(f"group_by[{i}]", f"invalid label name {item!r}")
    if len(set(value)) != len(value):
        v.err("group_by", "duplicate label")
    return tuple(value)


def _overrides(v: Any, value: Any) -> tuple[MetricOverride, ...]:
    out: list[MetricOverride] = []
    for where, o, tenant in v.override_entries(value, _OVERRIDE_KEYS):
        out.append(MetricOverride(tenant=tenant, severity=v.severity(f"{where}.severity", o.get("severity")),
                                  enabled=v.boolean(f"{where}.enabled", o["enabled"]) if "enabled" in o else None))
    return tuple(out)


def metric_rule_to_dict(spec: MetricRuleSpec) -> dict[str, Any]:
    """Canonical mapping for ``spec`` (what packs, the API and revisions hold)."""
    d: dict[str, Any] = {"id": spec.id, "kind": spec.kind, "name": spec.name, "category": spec.category}
    if not spec.enabled:
        d["enabled"] = False
    if spec.description:
        d["description"] = spec.description
    d["metric"] = spec.metric
    if spec.where:
        d["where"] = {m.label: m.text() for m in spec.where}
    if spec.group_by is not None:
        d["group_by"] = list(spec.group_by)
    if spec.kind == "threshold":
        d.update(aggregation=spec.aggregation, window=format_duration(spec.window_s), op=spec.op, value=spec.value)
        if spec.divide_by:
            d["divide_by"] = spec.divide_by
    elif spec.kind == "anomaly":
        d.update(window=format_duration(spec.window_s), baseline=spec.baseline, threshold=spec.z_threshold,
                 min_samples=spec.min_samples, direction=spec.direction)
        if spec.floor is not None:
            d["floor"] = spec.floor
    if spec.for_s is not None:
        d["for"] = format_duration(spec.for_s)
    if spec.consecutive is not None:
        d["consecutive"] = spec.consecutive
    d["severity"] = spec.severity
    d["recommended_action"] = spec.recommended_action
    if spec.labels:
        d["labels"] = dict(spec.labels)
    if spec.overrides:
        d["overrides"] = [{k: val for k, val in (("tenant", o.tenant), ("severity", o.severity),
                                                 ("enabled", o.enabled)) if val is not None} for o in spec.overrides]
    return d
