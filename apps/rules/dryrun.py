"""Dry run: which sample events match which rules, and would a threshold fire? No side effects.

Used by the admin page and ``POST /api/v1/rules/test``, which parse the pasted samples with
``apps.ingest.samples`` first. Pure: no database, no window rows, no alerts. Firing is simulated per (rule, group key) with the same window
arithmetic as the engine, evaluating each event at its own timestamp; cooldowns and already
open alerts are ignored (a dry run starts from empty windows). Spike and log anomaly rules report
their matches only (``would_fire`` false, ``threshold`` 0): their condition compares with history
(a reference window, a baseline) that a list of samples does not have.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from apps.core.events import Event
from apps.rules import windows
from apps.rules.matcher import CompiledRuleSet, group_key
from apps.rules.spec import RuleSpec



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
        if spec.kind != "log":  # judged against history: see the module docstring
            window_s, threshold = (spec.spike.timeframe_s if spec.spike else window_s), 0
        else:
            for ts, idx in sorted(hits):
                state = windows.add(state, [(ts, 1)], window_s=window_s, now=ts).state
                if windows.count_in_window(state, ts, window_s) >= threshold:
                    fires_at = idx
                    break
        result.groups.append(GroupOutcome(
            rule=spec.id, group_key=dict(zip(spec.group_by, values)), matches=len(hits), threshold=threshold,
            window_seconds=window_s, would_fire=fires_at is not None, fires_at_index=fires_at))
    return result
