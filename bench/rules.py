"""Matching cost per event with 10 vs 1,000 rules per tenant (issue 3: at most 2x).

    .venv/bin/python bench/rules.py [--events 900] [--repeat 7]

Pure CPU, no database: builds one CompiledRuleSet (all keywords in one Aho-Corasick automaton,
all patterns in one RE2 set) for 10 and for 1,000 rules and times matching the same realistic
lines; the baseline, measured in the same run, is one bare automaton lookup per line.
The engine's full per-batch cost (windows and alerts on PostgreSQL) is in
tests/rules/bench_engine.py (`make test PYTEST_ARGS="tests/rules/bench_engine.py -s"`).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alertcenter.settings")
os.environ.setdefault("DEBUG", "1")

import ahocorasick  # noqa: E402

from apps.core.events import Event  # noqa: E402
from apps.core.vocabulary import LEVEL_NUMBERS  # noqa: E402
from apps.rules.matcher import CompiledRuleSet  # noqa: E402
from apps.rules.spec import parse_rule  # noqa: E402


def rules(n: int):
    return [parse_rule({
        "id": f"r{i}", "name": f"rule {i}", "category": "error", "severity": "warning",
        "match": {"levels": ["ERROR", "FATAL"] if i % 3 == 0 else [],
                  "keywords": [f"kw{i}x", f"failure code {i}z"],
                  "patterns": [rf"order-{i}-\d+x"] if i % 2 == 0 else []},
        "threshold": {"count": 5, "window": "5m"},
    }) for i in range(n)]


def events(n: int) -> list[Event]:
    now = datetime.now(timezone.utc)
    levels = ["INFO", "ERROR", "WARNING"]
    return [Event(level=levels[i % 3], level_no=LEVEL_NUMBERS[levels[i % 3]],
                  message=f"worker processed order-{i * 7 % 2000}-{i * 13} for customer {i}; failure code "
                          f"{i % 20} retry kw{i * 11 % 2000}x in 30s",
                  tenant_id="acme", plugin_id="checkout", ts=now, trace_id=None, fields={})
            for i in range(n)]


def best_of(repeat: int, fn) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=900)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    evs = events(args.events)
    automaton = ahocorasick.Automaton()
    for i in range(10):
        automaton.add_word(f"kw{i}x", i)
    automaton.make_automaton()
    baseline = best_of(args.repeat, lambda: [list(automaton.iter(e.message.lower())) for e in evs])
    print(f"{'rules':>6} {'build ms':>9} {'us/event':>9} {'x baseline':>11} {'matched':>8}")
    print(f"{'base':>6} {'':>9} {baseline / len(evs) * 1e6:9.2f} {1.0:11.2f} {'':>8}")
    cost = {}
    for n in (10, 1000):
        start = time.perf_counter()
        rs = CompiledRuleSet.build(rules(n))
        build = time.perf_counter() - start
        matched = sum(1 for e in evs if rs.match(e))
        cost[n] = best_of(args.repeat, lambda: [rs.match(e) for e in evs])
        print(f"{n:>6} {build * 1000:9.1f} {cost[n] / len(evs) * 1e6:9.2f} {cost[n] / baseline:11.2f} {matched:>8}")
    print(f"1,000 rules cost {cost[1000] / cost[10]:.2f}x of 10 rules (target: at most 2x)")


if __name__ == "__main__":
    main()
