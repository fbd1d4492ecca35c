"""Engine cost per 1,000-event batch with 10 vs 1,000 rules (not a test; run explicitly):

    make test PYTEST_ARGS="tests/rules/bench_engine.py -q -s"

Realistic mix: 50 tenants, 20 plugins, mixed levels, ~5% of events matching a rule (ERROR lines,
spread over ~50 (tenant, plugin) windows per batch); optionally 1% carry "permission denied",
which fires a new security alert for most of them (alert creation dominates then). Prints the
median cost of detect() (matching + window rows + alerts, on PostgreSQL) and of matching alone.
"""
from __future__ import annotations

import random
import statistics
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import transaction

from apps.rules import engine, services
from apps.rules.packs import read_pack_dir
from apps.tenants.models import Tenant

from .conftest import T0, ev, rule_dict

ROOT = Path(__file__).resolve().parents[2]
LEVELS = ["DEBUG"] * 20 + ["INFO"] * 60 + ["WARNING"] * 15 + ["ERROR"] * 5


def batches(n_batches: int, seed: int = 1, alert_rate: float = 0.01):
    rnd = random.Random(seed)
    words = ["request served", "cache miss", "user login ok", "payment accepted", "queue drained",
             "db latency high", "retrying call", "slow response"]
    out = []
    for b in range(n_batches):
        batch = []
        for i in range(1000):
            level = rnd.choice(LEVELS)
            msg = f"{rnd.choice(words)} id={rnd.randrange(10**6)} path=/api/v1/items/{rnd.randrange(1000)}"
            if rnd.random() < alert_rate:
                msg += " permission denied"
            batch.append(ev(msg, level, tenant=f"t{rnd.randrange(50)}", plugin=f"p{rnd.randrange(20)}",
                            ts=T0 + timedelta(seconds=b)))
        out.append(batch)
    return out


def _setup(n_rules: int):
    pack = read_pack_dir(ROOT / "fixtures" / "log_rules")
    services.rules_sync(specs=pack.specs, sources=pack.sources, actor="bench")
    extra = [rule_dict(f"kw-{i}", count=50, levels=(), keywords=[f"rare-token-{i:04d}", f"oddity {i} seen"])
             for i in range(n_rules - len(pack.specs) - 20)]
    extra += [rule_dict(f"re-{i}", count=50, levels=(), patterns=[fr"errcode=E{i:03d}\d{{2}}"]) for i in range(20)]
    if n_rules > 10:
        services.pack_import(doc={"rules": extra}, actor="bench")
    else:
        services.pack_import(doc={"rules": extra[:0] + [rule_dict(f"x-{i}", count=50, levels=(),
                                                                    keywords=[f"rare-{i}"]) for i in range(5)]},
                             actor="bench")


@pytest.mark.django_db
@pytest.mark.parametrize("alert_rate", [0.0, 0.01])
@pytest.mark.parametrize("n_rules", [10, 1000])
def test_bench(n_rules, alert_rate):
    Tenant.objects.bulk_create([Tenant(slug=f"t{i}", name=f"T{i}") for i in range(50)])
    _setup(n_rules)
    data = batches(30, alert_rate=alert_rate)
    engine.reset_cache()
    compiled_at = time.perf_counter()
    version = engine.ruleset_stamp()
    c = engine.compiled_rules(version)
    for i in range(50):
        c.for_tenant(f"t{i}")
    compile_s = time.perf_counter() - compiled_at
    full, match_only = [], []
    for i, batch in enumerate(data):
        start = time.perf_counter()
        engine.aggregate(batch, c)
        match_only.append(time.perf_counter() - start)
        start = time.perf_counter()
        with transaction.atomic():
            r = engine.detect(batch, received_at=T0 + timedelta(seconds=i + 1))
        full.append(time.perf_counter() - start)
    n = len(c.for_tenant("t0"))
    print(f"\n{n} rules/tenant: compile {compile_s * 1000:.0f} ms; per 1,000 events: match "
          f"{statistics.median(match_only) * 1000:.1f} ms, detect (with DB) {statistics.median(full) * 1000:.1f} ms; "
          f"last batch matched {len(r.matched)} events in {r.groups} groups, {r.alerts_fired} alerts fired "
          f"(security keyword rate {alert_rate:.0%})")
