"""Dry run: which sample events match which rules, and would a threshold fire? No side effects.

Used by the admin page and ``POST /api/v1/rules/test``. Pure apart from parsing: no database,
no window rows, no alerts. Firing is simulated per (rule, group key) with the same window
arithmetic as the engine, evaluating each event at its own timestamp; cooldowns and already
open alerts are ignored (a dry run starts from empty windows).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Sequence

import orjson

from apps.ingest.normalize import Event, EventError, normalize_event
from apps.rules import windows
from apps.rules.matcher import CompiledRuleSet, group_key
from apps.rules.spec import RuleSpec

MAX_SAMPLES = 1000
_WIDE = timedelta(days=3650)  # a dry run accepts old samples: skew limits are ingest's business


@dataclass
class GroupOutcome:
    rule: str
    group_key: dict[str, str]
    matches: int
    threshold: int
    window_seconds: int
    would_fire: bool
    fires_at_index: int | None = None  # the event that would make it fire


@dataclass
class DryRunResult:
    events: list[dict[str, Any]] = field(default_factory=list)  # {index, level, message, rules}
    groups: list[GroupOutcome] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)  # {index, error}

    def as_dict(self) -> dict[str, Any]:
        return {"events": self.events, "groups": [asdict(g) for g in self.groups], "errors": self.errors}


def _plain_line(line: str) -> dict[str, Any]:
    """``ERROR message``, ``[ERROR] message`` or ``ERROR: message`` -> an event mapping."""
    head, _, rest = line.partition(" ")
    level = head.strip("[]:")
    if not rest.strip():
        raise EventError("line", "expected '<LEVEL> <message>' or a JSON object")
    return {"level": level, "message": rest.strip()}


def parse_samples(items: str | Sequence[Any], *, tenant: str, plugin: str = "dry-run",
                  now: datetime) -> tuple[list[Event], list[int], list[dict[str, Any]]]:
    """Events from pasted text (NDJSON or ``LEVEL message`` lines) or a list of event mappings.

    Returns (events, their sample indices, errors); a bad line is reported and skipped. Every event
    belongs to ``tenant`` (the dry run never reads another tenant's overrides).
    """
    raw: list[Any] = []
    if isinstance(items, str):
        for line in items.splitlines():
            line = line.strip()
            if not line:
                continue
            if line.startswith("{"):
                try:
                    raw.append(orjson.loads(line))
                except orjson.JSONDecodeError as exc:
                    raw.append(EventError("line", f"not valid JSON: {exc}"))
            else:
                try:
                    raw.append(_plain_line(line))
                except EventError as exc:
                    raw.append(exc)
    else:
        raw = list(items)
    events, indices, errors = [], [], []
    for i, item in enumerate(raw[:MAX_SAMPLES]):
        try:
            if isinstance(item, EventError):
                raise item
            if isinstance(item, dict):
                item = {**item, "tenant_id": tenant}
                item.setdefault("plugin_id", plugin)
            events.append(normalize_event(item, now=now, max_past=_WIDE, max_future=_WIDE, default_tenant=tenant))
            indices.append(i)
        except EventError as exc:
            errors.append({"index": i, "error": str(exc)})
    if len(raw) > MAX_SAMPLES:
        errors.append({"index": MAX_SAMPLES, "error": f"only the first {MAX_SAMPLES} samples are tested"})
    return events, indices, errors


def dry_run(specs: Sequence[RuleSpec], events: Sequence[Event], indices: Sequence[int] | None = None,
            errors: list[dict[str, Any]] | None = None) -> DryRunResult:
    """Match ``events`` against ``specs`` (already the tenant's effective, enabled rules)."""
    indices = list(indices) if indices is not None else list(range(len(events)))
    result = DryRunResult(errors=list(errors or []))
    rs = CompiledRuleSet.build(list(specs))
    grouped: dict[tuple, list[tuple[float, int]]] = {}
    for ev, idx in zip(events, indices):
        hits = rs.match(ev)
        result.events.append({"index": idx, "level": ev.level, "message": ev.message,
                              "rules": [rs.specs[r].id for r in hits]})
        for r in hits:
            grouped.setdefault((r, group_key(rs.specs[r].group_by, ev)), []).append((ev.ts.timestamp(), idx))
    for (r, values), hits in sorted(grouped.items(), key=lambda kv: (rs.specs[kv[0][0]].id, kv[0][1])):
        spec = rs.specs[r]
        window_s, threshold = spec.threshold.window_s, spec.threshold.count
        state: dict | None = None
        fires_at = None
        for ts, idx in sorted(hits):
            state = windows.add(state, [(ts, 1)], window_s=window_s, now=ts).state
            if windows.count_in_window(state, ts, window_s) >= threshold:
                fires_at = idx
                break
        result.groups.append(GroupOutcome(
            rule=spec.id, group_key=dict(zip(spec.group_by, values)), matches=len(hits), threshold=threshold,
            window_seconds=window_s, would_fire=fires_at is not None, fires_at_index=fires_at))
    return result
