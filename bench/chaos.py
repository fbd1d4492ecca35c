"""Chaos bench: every fault scenario of tests/reliability at a bigger size, one table.

    .venv/bin/python bench/chaos.py [--only NAME ...] [--scale 1]

Runs on its own database (CHAOS_DATABASE_URL, default .../ac_chaos, created and migrated if
missing) and its own Redis database (CHAOS_REDIS_URL, default redis://127.0.0.1:6379/14, flushed),
with real gunicorn, Celery worker and sweeper processes and local receiver / SMTP / SMS peers.
Each scenario uses a fresh tenant, so runs can repeat on the same database. Prints: scenario,
events sent, accepted, counted, alerts expected/fired, deliveries expected/delivered/downgraded,
duplicate requests (same webhook-id), lost (must be 0), time to recover, then scenario details
(burst: answers per phase and detection latency per phase; receiver down; clock steps) and the
violations.
Exit status 1 if any invariant failed.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DB_URL = os.environ.get("CHAOS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ac_chaos")
REDIS_URL = os.environ.get("CHAOS_REDIS_URL", "redis://127.0.0.1:6379/14")
os.environ.update({
    "DJANGO_SETTINGS_MODULE": "alertcenter.settings", "DATABASE_URL": DB_URL, "REDIS_URL": REDIS_URL,
    "CELERY_BROKER_URL": "", "CACHE_URL": "", "DEBUG": "0", "LOG_FORMAT": "text",
    "SECRET_KEY": os.environ.get("SECRET_KEY") or "chaos-bench-secret-key",
    "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
})


def ensure_database() -> None:
    import psycopg

    name = DB_URL.rsplit("/", 1)[1]
    with psycopg.connect(DB_URL.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", default=None, help="scenario function names to run")
    ap.add_argument("--scale", type=int, default=1, help="multiply the sizes")
    args = ap.parse_args()

    ensure_database()
    import django

    django.setup()
    import redis
    from django.core.management import call_command

    import logging

    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's per-connection chatter
    call_command("migrate", verbosity=0)
    redis.Redis.from_url(REDIS_URL).flushdb()

    from tests.reliability import scenarios as sc

    k = args.scale
    stamp = time.strftime("%H%M%S")
    plan = [
        (sc.worker_killed_mid_detection, dict(batches=60 * k, plugins=8, errors=30, noise=500)),
        (sc.worker_killed_mid_delivery, dict(plugins=10 * k, slow_requests=4)),
        (sc.redis_flushed, dict(batches=15 * k, plugins=10)),
        (sc.flaky_receiver, dict(plugins=20 * k, settle=300)),
        (sc.two_workers_two_sweepers, dict(plugins=25 * k)),
        (sc.database_outage, dict(before=10 * k, during=20 * k, after=10 * k)),
        (sc.receiver_down_then_back, dict(plugins=12 * k, late_plugins=4, down_attempts=6)),
        (sc.clock_steps, dict(plugins=10 * k, late_plugins=5, forward_h=6, back_h=2)),
        (sc.burst, dict(burst_s=45, calm_s=10, senders=4 * k, quota_factor=5, settle=300)),
    ]
    reports = []
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        for i, (fn, kw) in enumerate(plan):
            if args.only and fn.__name__ not in args.only:
                continue
            print(f"... {fn.__name__}", file=sys.stderr, flush=True)
            t0 = time.monotonic()
            try:
                report, facts = fn(Path(tmp), slug=f"chaos{i}-{stamp}", **kw)
            except Exception as exc:  # a scenario that crashed is a failed row, not a lost table
                traceback.print_exc()
                from tests.reliability.invariants import Report

                report, facts = Report(scenario=fn.__name__, violations=[f"crashed: {exc!r}"[:300]]), {}
            report.facts, report.fn = facts, fn.__name__  # type: ignore[attr-defined]
            print(f"    {time.monotonic() - t0:.1f}s {facts if not isinstance(facts, dict) or len(str(facts)) < 300 else ''}",
                  file=sys.stderr, flush=True)
            reports.append(report)
    print_table(reports)
    return 1 if any(r.violations or r.lost for r in reports) else 0


def print_table(reports) -> None:
    cols = [("scenario", "scenario", 44), ("sent", "sent", 7), ("accepted", "accepted", 8), ("counted", "counted", 7),
            ("alerts exp/fired", None, 16), ("deliv exp/ok/downgr", None, 19), ("dups", "duplicates", 4),
            ("lost", "lost", 4), ("recover s", "recover_s", 9)]
    line = " | ".join(h.ljust(w) for h, _, w in cols)
    print(line)
    print("-" * len(line))
    for r in reports:
        cells = []
        for h, attr, w in cols:
            if h.startswith("alerts"):
                v = f"{r.alerts_expected}/{r.alerts_fired}"
            elif h.startswith("deliv"):
                v = f"{r.deliveries_expected}/{r.delivered}/{r.downgraded}"
            else:
                v = getattr(r, attr)
            cells.append(str(v).ljust(w))
        print(" | ".join(cells))
    details = {"receiver_down_then_back": ("during", "after"),
               "clock_steps": ("retry_in_s", "forward", "back_quiet", "back", "levels", "retried", "others"),
               "burst": ("answers", "latency_ms", "drain_s")}
    for r in reports:
        facts = getattr(r, "facts", None) or {}
        shown = {k: facts[k] for k in details.get(getattr(r, "fn", ""), ()) if k in facts}
        if shown:
            print(f"[{r.scenario}] {shown}")
    for r in reports:
        for v in r.violations[:10]:
            print(f"VIOLATION [{r.scenario}]: {v}")


if __name__ == "__main__":
    sys.exit(main())
