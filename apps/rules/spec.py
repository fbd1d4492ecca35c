"""Rule-pack schema (DESIGN section 6): parse, validate, apply tenant overrides, export.

Contract: ``load_pack(text)`` returns frozen ``RuleSpec`` objects or raises ``RulePackError``
carrying *every* problem in the pack, each naming the rule and the field, e.g.
``rule 'plugin-error-burst': match.levels: unknown level 'EROR'``. Unknown keys are errors
(typo protection), and so are duplicate YAML keys, which YAML would otherwise silently merge.
``dump_pack`` writes a canonical pack: ``load_pack(dump_pack(specs)) == specs``.

Defaults: enabled true, group_by [tenant_id, plugin_id], cooldown 0, recommended_action "",
description "", no auto_resolve, no labels, no overrides. Keywords match case-insensitively;
patterns use RE2 syntax (see ``apps.rules.matcher``).
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Iterator, Sequence

import yaml

from apps.core.vocabulary import ID_RE, SEVERITIES, format_duration, parse_duration, parse_level
from apps.rules.log_kind_spec import (KEYS as LOG_KIND_KEYS, LOG_KINDS, OVERRIDE_KEYS as LOG_KIND_OVERRIDE_KEYS,
                                      LogAnomaly, Spike, log_anomaly_to_dict, parse_log_anomaly, parse_spike,
                                      spike_to_dict)
from apps.rules.matcher import pattern_error
from apps.rules.metric_spec import METRIC_KINDS, MetricRuleSpec, metric_rule_to_dict, parse_metric_rule

GROUP_BY_FIELDS: tuple[str, ...] = ("tenant_id", "plugin_id", "trace_id")
DEFAULT_GROUP_BY: tuple[str, ...] = ("tenant_id", "plugin_id")
MAX_KEYWORDS = 1000
MAX_KEYWORD_CHARS = 200
MAX_PATTERNS = 50
MAX_PATTERN_CHARS = 1000
MIN_WINDOW_S = 1
MAX_WINDOW_S = 24 * 3600
MAX_COUNT = 1_000_000
MAX_LABELS = 20
MAX_TEXT_CHARS = 2000

_FIELD_GROUP_RE = re.compile(r"fields\.[A-Za-z0-9_@.-]{1,128}")
_LABEL_KEY_RE = re.compile(r"[A-Za-z0-9_./-]{1,63}")

_RULE_KEYS = ("id", "name", "category", "enabled", "description", "match", "threshold",
              "group_by", "severity", "cooldown", "auto_resolve", "recommended_action",
              "labels", "overrides")
_MATCH_KEYS = ("levels", "keywords", "patterns")
_THRESHOLD_KEYS = ("count", "window")
_OVERRIDE_KEYS = ("tenant", "threshold", "severity", "enabled", "cooldown")


class RulePackError(ValueError):
    """A rule pack is invalid; ``errors`` lists every problem found."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class Match:
    levels: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Threshold:
    count: int
    window_s: int


@dataclass(frozen=True, slots=True)
class Override:
    """Per-tenant changes; ``None`` means "keep the rule's value"."""

    tenant: str
    count: int | None = None
    window_s: int | None = None
    severity: str | None = None
    enabled: bool | None = None
    cooldown_s: int | None = None


@dataclass(frozen=True, slots=True)
class RuleSpec:
    id: str
    name: str
    category: str
    match: Match
    threshold: Threshold
    severity: str
    group_by: tuple[str, ...] = DEFAULT_GROUP_BY
    cooldown_s: int = 0
    recommended_action: str = ""
    enabled: bool = True
    description: str = ""
    auto_resolve_s: int | None = None
    labels: tuple[tuple[str, str], ...] = ()
    overrides: tuple[Override, ...] = field(default=())
    # ``kind: spike`` / ``kind: log_anomaly`` (apps.rules.log_kind_spec); None for a count rule. A
    # spike rule's ``threshold`` is derived: window = 2 x timeframe (its window row holds both).
    spike: Spike | None = None
    anomaly: LogAnomaly | None = None

    @property
    def kind(self) -> str:
        return "spike" if self.spike else "log_anomaly" if self.anomaly else "log"

    def for_tenant(self, tenant: str) -> RuleSpec:
        """This rule as ``tenant`` sees it (its override applied, overrides dropped)."""
        for o in self.overrides:
            if o.tenant == tenant:
                counted = self.kind == "log"  # the other kinds' overrides carry no threshold
                return replace(
                    self,
                    threshold=Threshold(
                        count=self.threshold.count if o.count is None or not counted else o.count,
                        window_s=self.threshold.window_s if o.window_s is None or not counted else o.window_s),
                    severity=o.severity or self.severity,
                    enabled=self.enabled if o.enabled is None else o.enabled,
                    cooldown_s=self.cooldown_s if o.cooldown_s is None else o.cooldown_s,
                    overrides=())
        return replace(self, overrides=())


def effective_specs(specs: Iterable[RuleSpec], tenant: str) -> list[RuleSpec]:
    """Enabled log rules of ``tenant``, overrides applied: the input of ``CompiledRuleSet.build``.

    Metric rules (``kind`` threshold/anomaly/absence) are evaluated on a schedule
    (``apps.rules.metric_eval``), never matched against log lines, so they are left out here."""
    out = [s.for_tenant(tenant) for s in specs if isinstance(s, RuleSpec)]
    return [s for s in out if s.enabled]


# --------------------------------------------------------------------------- loading


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of keeping the last one."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_pack(text: str) -> list[RuleSpec]:
    """Parse a YAML or JSON rule pack; raise ``RulePackError`` listing every problem."""
    try:
        doc = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        raise RulePackError([f"pack is not valid YAML/JSON: {exc}"]) from None
    except RecursionError:  # PyYAML composes nodes recursively: [[[[...]]]] thousands deep
        raise RulePackError(["pack is not valid YAML/JSON: nested too deeply"]) from None
    return parse_pack(doc)


def parse_pack(doc: object) -> list[RuleSpec]:
    """Validate an already-decoded pack (``{"rules": [...]}``); raise ``RulePackError``."""
    if doc is None:
        raise RulePackError(["pack is empty"])
    if not isinstance(doc, dict) or "rules" not in doc:
        raise RulePackError(["pack: expected a mapping with a 'rules' list"])
    errors = [f"pack: unknown key {k!r}" for k in doc if k != "rules"]
    rules = doc["rules"]
    if not isinstance(rules, list):
        raise RulePackError(errors + ["pack: 'rules' must be a list"])
    specs: list[RuleSpec] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(rules):
        v = _RuleValidator(raw, i)
        spec = v.build()
        errors.extend(v.errors)
        rid = raw.get("id") if isinstance(raw, dict) else None
        if isinstance(rid, str):
            if rid in seen:
                errors.append(f"rule '{rid}': id: duplicate (also rule #{seen[rid] + 1})")
            seen.setdefault(rid, i)
        if spec is not None:
            specs.append(spec)
    if errors:
        raise RulePackError(errors)
    return specs


def parse_rule(raw: object) -> RuleSpec:
    """Validate one rule mapping (admin form, API); raise ``RulePackError``."""
    v = _RuleValidator(raw, 0)
    spec = v.build()
    if v.errors or spec is None:
        raise RulePackError(v.errors)
    return spec


DEFAULT_PATTERN_MAX_PROGRAM_SIZE = 500


def pattern_cost_error(pattern: str) -> str | None:
    """None when RE2's compiled program for ``pattern`` is within RULE_PATTERN_MAX_PROGRAM_SIZE.

    Why: RE2 is linear in the line length, but the constant is the program size: ``a{1000}`` costs
    about 240 times a plain keyword on every long line, for every event of the tenant. Assumes
    ``pattern`` compiles (``pattern_error`` first).
    """
    import re2

    try:
        from django.conf import settings

        limit = int(getattr(settings, "RULE_PATTERN_MAX_PROGRAM_SIZE", DEFAULT_PATTERN_MAX_PROGRAM_SIZE))
    except Exception:  # noqa: BLE001 - spec validation also runs without Django settings (scripts)
        limit = DEFAULT_PATTERN_MAX_PROGRAM_SIZE
    size = re2.compile(pattern).programsize
    if size > limit:
        return (f"too costly to match: RE2 program size {size} exceeds RULE_PATTERN_MAX_PROGRAM_SIZE={limit}"
                " (use smaller repetition counts or fewer alternatives; plain text belongs in keywords)")
    return None


class _RuleValidator:
    """Collects errors for one rule instead of stopping at the first."""

    def __init__(self, raw: object, index: int) -> None:
        self.raw = raw
        self.errors: list[str] = []
        rid = raw.get("id") if isinstance(raw, dict) else None
        self.label = f"rule '{rid}'" if isinstance(rid, str) and rid else f"rule #{index + 1}"

    def err(self, where: str, message: str) -> None:
        self.errors.append(f"{self.label}: {where}: {message}")

    def build(self) -> RuleSpec | None:
        raw = self.raw
        if not isinstance(raw, dict):
            self.errors.append(f"{self.label}: must be a mapping")
            return None
        kind = raw.get("kind", "log")
        if kind in METRIC_KINDS:
            return parse_metric_rule(self)
        if kind != "log" and kind not in LOG_KINDS:
            self.err("kind", f"unknown kind {kind!r} (use log | {' | '.join(LOG_KINDS + METRIC_KINDS)}; default log)")
            kind = "log"
        known = _RULE_KEYS if kind == "log" else LOG_KIND_KEYS[kind]
        for key in raw:
            if key == "kind":
                continue
            if key not in known:
                self.err(str(key), f"unknown key for kind {kind!r}{_suggest(key, known)}" if kind != "log"
                         else f"unknown key{_suggest(key, _RULE_KEYS)}")
        rid = self.text("id", raw.get("id"), 64)
        if rid is not None and not ID_RE.fullmatch(rid):
            self.err("id", f"invalid {rid!r}: use 1-64 letters, digits, '_', '.', '-'")
        name = self.text("name", raw.get("name"), 200)
        category = self.text("category", raw.get("category"), 64)
        match = self.match(raw.get("match"))
        spike = anomaly = None
        if kind == "spike":
            spike = parse_spike(self, raw)
            threshold = Threshold(1, 2 * spike.timeframe_s) if spike else None
        elif kind == "log_anomaly":
            anomaly = parse_log_anomaly(self, raw)
            threshold = Threshold(1, anomaly.window_s) if anomaly else None
        else:
            threshold = self.threshold("threshold", raw.get("threshold"), partial=False)
        severity = self.severity("severity", raw.get("severity"), required=True)
        def opt(key: str, default: Any) -> Any:
            # "description:" with nothing after it is YAML null: treat it as "not given".
            value = raw.get(key)
            return default if value is None else value

        group_by = self.group_by(opt("group_by", list(DEFAULT_GROUP_BY)))
        cooldown = self.duration("cooldown", opt("cooldown", 0), 0, None)
        auto_resolve = (None if raw.get("auto_resolve") is None
                        else self.duration("auto_resolve", raw["auto_resolve"], 1, None))
        action = self.text("recommended_action", opt("recommended_action", ""),
                           MAX_TEXT_CHARS, allow_empty=True)
        description = self.text("description", opt("description", ""),
                                MAX_TEXT_CHARS, allow_empty=True)
        enabled = self.boolean("enabled", opt("enabled", True))
        labels = self.labels(opt("labels", {}))
        overrides = self.overrides(opt("overrides", []), LOG_KIND_OVERRIDE_KEYS.get(kind, _OVERRIDE_KEYS))

        if self.errors:
            return None
        return RuleSpec(
            id=rid, name=name, category=category, match=match, threshold=threshold,
            severity=severity, group_by=group_by, cooldown_s=cooldown,
            recommended_action=action, enabled=enabled, description=description,
            auto_resolve_s=auto_resolve, labels=labels, overrides=overrides, spike=spike, anomaly=anomaly)

    # Each helper reports its own errors and returns None when the value is unusable.

    def text(self, where: str, value: Any, max_chars: int, allow_empty: bool = False) -> Any:
        if value is None and not allow_empty:
            self.err(where, "required")
            return None
        if not isinstance(value, str):
            self.err(where, f"must be a string, got {type(value).__name__}")
            return None
        if not allow_empty and not value.strip():
            self.err(where, "must not be empty")
        elif len(value) > max_chars:
            self.err(where, f"longer than {max_chars} characters")
        return value

    def boolean(self, where: str, value: Any) -> Any:
        if not isinstance(value, bool):
            self.err(where, f"must be true or false, got {value!r}")
        return value

    def severity(self, where: str, value: Any, required: bool = False) -> Any:
        if value is None:
            if required:
                self.err(where, "required")
            return None
        if value not in SEVERITIES:
            self.err(where, f"unknown severity {value!r} (use {' | '.join(SEVERITIES)})")
        return value

    def duration(self, where: str, value: Any, lo: int, hi: int | None) -> Any:
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.err(where, str(exc))
            return None
        if seconds < lo or (hi is not None and seconds > hi):
            bounds = f"between {format_duration(lo)} and {format_duration(hi)}" if hi else (
                f"at least {format_duration(lo)}")
            self.err(where, f"{format_duration(seconds)} out of range (must be {bounds})")
        return seconds

    def count(self, where: str, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            self.err(where, f"must be an integer, got {value!r}")
        elif not 1 <= value <= MAX_COUNT:
            self.err(where, f"{value} out of range (must be 1..{MAX_COUNT})")
        return value

    def mapping(self, where: str, value: Any, keys: Sequence[str]) -> dict | None:
        if not isinstance(value, dict):
            self.err(where, f"must be a mapping, got {type(value).__name__}")
            return None
        for key in value:
            if key not in keys:
                self.err(f"{where}.{key}", f"unknown key{_suggest(key, keys)}")
        return value

    def string_list(self, where: str, value: Any, limit: int, max_chars: int) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.err(where, f"must be a list, got {type(value).__name__}")
            return []
        if len(value) > limit:
            self.err(where, f"{len(value)} items, at most {limit} allowed")
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                self.err(f"{where}[{i}]", f"must be a non-empty string, got {item!r}")
            elif len(item) > max_chars:
                self.err(f"{where}[{i}]", f"longer than {max_chars} characters")
            else:
                out.append(item)
        return out

    def match(self, value: Any) -> Match | None:
        if value is None:
            self.err("match", "required")
            return None
        m = self.mapping("match", value, _MATCH_KEYS)
        if m is None:
            return None
        levels: list[str] = []
        raw_levels = m.get("levels") or []
        if not isinstance(raw_levels, list):
            self.err("match.levels", f"must be a list, got {type(raw_levels).__name__}")
            raw_levels = []
        for item in raw_levels:
            try:
                level = parse_level(item)
            except ValueError as exc:
                self.err("match.levels", str(exc))
                continue
            if level not in levels:
                levels.append(level)
        keywords = self.string_list("match.keywords", m.get("keywords"),
                                    MAX_KEYWORDS, MAX_KEYWORD_CHARS)
        patterns = self.string_list("match.patterns", m.get("patterns"),
                                    MAX_PATTERNS, MAX_PATTERN_CHARS)
        for i, p in enumerate(patterns):
            problem = pattern_error(p) or pattern_cost_error(p)
            if problem:
                self.err(f"match.patterns[{i}]", problem)
        if not (raw_levels or m.get("keywords") or m.get("patterns")):
            self.err("match", "empty (give levels, keywords or patterns)")
        return Match(tuple(levels), tuple(keywords), tuple(patterns))

    def threshold(self, where: str, value: Any, partial: bool) -> Threshold | None:
        if value is None:
            if not partial:
                self.err(where, "required")
            return None
        t = self.mapping(where, value, _THRESHOLD_KEYS)
        if t is None:
            return None
        if not partial:
            for key in _THRESHOLD_KEYS:
                if key not in t:
                    self.err(f"{where}.{key}", "required")
        count = self.count(f"{where}.count", t["count"]) if "count" in t else None
        window = (self.duration(f"{where}.window", t["window"], MIN_WINDOW_S, MAX_WINDOW_S)
                  if "window" in t else None)
        return Threshold(count, window)

    def group_by(self, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list):
            self.err("group_by", f"must be a list, got {type(value).__name__}")
            return DEFAULT_GROUP_BY
        out: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not (
                    item in GROUP_BY_FIELDS or _FIELD_GROUP_RE.fullmatch(item)):
                self.err(f"group_by[{i}]", f"unknown {item!r} (use {', '.join(GROUP_BY_FIELDS)} "
                                           "or fields.<name>)")
            elif item in out:
                self.err(f"group_by[{i}]", f"duplicate {item!r}")
            else:
                out.append(item)
        return tuple(out)

    def labels(self, value: Any) -> tuple[tuple[str, str], ...]:
        if not isinstance(value, dict):
            self.err("labels", f"must be a mapping, got {type(value).__name__}")
            return ()
        if len(value) > MAX_LABELS:
            self.err("labels", f"{len(value)} labels, at most {MAX_LABELS} allowed")
        out = []
        for key, item in value.items():
            if not isinstance(key, str) or not _LABEL_KEY_RE.fullmatch(key):
                self.err("labels", f"invalid key {key!r}")
            elif isinstance(item, (dict, list)) or item is None:
                self.err(f"labels.{key}", "must be a scalar")
            else:
                text = str(item).lower() if isinstance(item, bool) else str(item)
                if len(text) > 200:
                    self.err(f"labels.{key}", "longer than 200 characters")
                out.append((key, text))
        return tuple(out)

    def override_entries(self, value: Any, keys: Sequence[str]) -> Iterator[tuple[str, dict, Any]]:
        """(where, mapping, tenant) for each override entry that is a mapping of known ``keys``; a
        non-list, a bad tenant id and a second override of one tenant are reported here, so every
        rule kind's overrides (log, metric) say the same things."""
        if not isinstance(value, list):
            self.err("overrides", f"must be a list, got {type(value).__name__}")
            return
        seen: list[Any] = []
        for i, raw in enumerate(value):
            where = f"overrides[{i}]"
            o = self.mapping(where, raw, keys)
            if o is None:
                continue
            tenant = o.get("tenant")
            if not isinstance(tenant, str) or not ID_RE.fullmatch(tenant):
                self.err(f"{where}.tenant", f"required tenant id, got {tenant!r}")
            elif tenant in seen:
                self.err(f"{where}.tenant", f"duplicate override for {tenant!r}")
            seen.append(tenant)
            yield where, o, tenant

    def overrides(self, value: Any, keys: Sequence[str] = _OVERRIDE_KEYS) -> tuple[Override, ...]:
        out: list[Override] = []
        for where, o, tenant in self.override_entries(value, keys):
            t = self.threshold(f"{where}.threshold", o.get("threshold"), partial=True)
            out.append(Override(
                tenant=tenant,
                count=t.count if t else None,
                window_s=t.window_s if t else None,
                severity=self.severity(f"{where}.severity", o.get("severity")),
                enabled=(self.boolean(f"{where}.enabled", o["enabled"])
                         if "enabled" in o else None),
                cooldown_s=(self.duration(f"{where}.cooldown", o["cooldown"], 0, None)
                            if "cooldown" in o else None),
            ))
        return tuple(out)


def _suggest(key: object, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(key), known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"


# --------------------------------------------------------------------------- export


def rule_to_dict(spec: RuleSpec | MetricRuleSpec) -> dict[str, Any]:
    """Canonical mapping for ``spec``; optional fields at their defaults are left out."""
    if isinstance(spec, MetricRuleSpec):
        return metric_rule_to_dict(spec)
    d: dict[str, Any] = {"id": spec.id}
    if spec.kind != "log":
        d["kind"] = spec.kind
    d.update(name=spec.name, category=spec.category)
    if not spec.enabled:
        d["enabled"] = False
    if spec.description:
        d["description"] = spec.description
    d["match"] = {"levels": list(spec.match.levels), "keywords": list(spec.match.keywords),
                  "patterns": list(spec.match.patterns)}
    if spec.spike:
        d.update(spike_to_dict(spec.spike))
    elif spec.anomaly:
        d.update(log_anomaly_to_dict(spec.anomaly))
    else:
        d["threshold"] = {"count": spec.threshold.count,
                          "window": format_duration(spec.threshold.window_s)}
    if not spec.anomaly:  # a log anomaly rule is always per (tenant, plugin), without a cooldown
        d["group_by"] = list(spec.group_by)
    d["severity"] = spec.severity
    if not spec.anomaly:
        d["cooldown"] = format_duration(spec.cooldown_s)
    if spec.auto_resolve_s is not None:
        d["auto_resolve"] = format_duration(spec.auto_resolve_s)
    d["recommended_action"] = spec.recommended_action
    if spec.labels:
        d["labels"] = dict(spec.labels)
    if spec.overrides:
        d["overrides"] = [_override_to_dict(o) for o in spec.overrides]
    return d


def _override_to_dict(o: Override) -> dict[str, Any]:
    d: dict[str, Any] = {"tenant": o.tenant}
    threshold: dict[str, Any] = {}
    if o.count is not None:
        threshold["count"] = o.count
    if o.window_s is not None:
        threshold["window"] = format_duration(o.window_s)
    if threshold:
        d["threshold"] = threshold
    if o.severity is not None:
        d["severity"] = o.severity
    if o.enabled is not None:
        d["enabled"] = o.enabled
    if o.cooldown_s is not None:
        d["cooldown"] = format_duration(o.cooldown_s)
    return d


def dump_pack(specs: Iterable[RuleSpec], fmt: str = "yaml") -> str:
    """Export ``specs`` as a "yaml" or "json" pack that ``load_pack`` reads back equal."""
    doc = {"rules": [rule_to_dict(s) for s in specs]}
    if fmt == "json":
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if fmt == "yaml":
        return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100)
    raise ValueError(f"unknown format {fmt!r} (use yaml or json)")
