from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from apps.core.events import Event
from apps.core.vocabulary import LEVEL_NUMBERS
from apps.rules import engine

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


def rule_dict(rid: str = "errors", *, count: int = 5, window: str = "5m", cooldown: str = "10m",
              levels=("ERROR", "FATAL"), keywords=(), patterns=(), **extra) -> dict:
    d = {"id": rid, "name": rid.replace("-", " ").title(), "category": "error",
         "match": {"levels": list(levels), "keywords": list(keywords), "patterns": list(patterns)},
         "threshold": {"count": count, "window": window}, "severity": "critical", "cooldown": cooldown,
         "recommended_action": "Roll back."}
    d.update(extra)
    return d


def ev(message: str = "boom", level: str = "ERROR", *, tenant: str = "acme", plugin: str = "checkout",
       ts: datetime = T0, trace_id: str | None = None, **fields) -> Event:
    return Event(level=level, level_no=LEVEL_NUMBERS[level], message=message, tenant_id=tenant,
                 plugin_id=plugin, ts=ts, trace_id=trace_id, fields=fields)


def burst(n: int, *, start: datetime = T0, step: float = 1.0, **kw) -> list[Event]:
    return [ev(ts=start + timedelta(seconds=i * step), **kw) for i in range(n)]


@pytest.fixture(autouse=True)
def _fresh_engine_cache():
    # The cache is keyed by ruleset version, which restarts at the same numbers in every test DB.
    engine.reset_cache()
    yield
    engine.reset_cache()
