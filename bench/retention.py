"""The rules' state as it ages: what idle window rows cost a spike rule's evaluation, and what the
purge (``purge_expired``) takes to remove them and old metric rollups.

    .venv/bin/python bench/retention.py [--stale 200000 --stale 1000000] [--rollups 1000000] [--attempts 1000000] [--repeat 9]

One tenant, a spike rule and 1,000 groups active in the last minutes (the baseline: no stale row).
Per S stale rows (window rows of groups last counted two days ago, e.g. source IPs of a brute-force
rule, as they piled up before windows were purged): the spike rule's scheduled evaluation
(``spike.evaluate_rule``, median / max of ``--repeat``), then ``purge_expired`` (its window step:
rows/s), then the evaluation again. Then R metric rollups older than METRICS_RETENTION_DAYS, of
1,000 series that stopped sending, purged (rollups and series: rows/s). Then A delivery attempts
past DELIVERY_ATTEMPT_RETENTION_DAYS, purged twice: once as a whole day partition (the table is
partitioned by day on PostgreSQL, so the purge drops it) and once from the DEFAULT partition (a day
with no partition of its own: deleted in chunks by row, what every purge did before), each with its
time, its rows/s and the WAL it wrote.

Database ``ac_retention_bench`` (dropped and recreated; ``BENCH_DB`` to change), Redis db 15.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB = os.environ.get("BENCH_DB", "postgres://postgres@127.0.0.1:5432/ac_retention_bench")
os.environ.update(DATABASE_URL=DB, REDIS_URL=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"),
                  DEBUG="0", LOG_LEVEL="ERROR", LOG_FORMAT="text", CELERY_BROKER_URL="", CACHE_URL="")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alertcenter.settings")

ACTIVE = 1_000
SPIKE = {"id": "err-spike", "kind": "spike", "name": "Error spike", "category": "error",
         "match": {"levels": ["ERROR", "FATAL"]}, "timeframe": "10m", "spike_height": 3, "spike_type": "both",
         "group_by": ["tenant_id", "fields.source_ip"], "severity": "warning", "cooldown": "30m"}


def reset_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def windows(cursor, tenant_id: int, first: int, n: int, age_s: int) -> None:
    """n window rows of the spike rule, groups ``first``.. , last counted ``age_s`` ago."""
    cursor.execute(
        "INSERT INTO rules_windowstate (rule_key, tenant_id, group_hash, group_key, state, updated_at) "
        "SELECT %s, %s, 'g' || g, jsonb_build_object('fields.source_ip', '10.0.' || g), "
        "jsonb_build_object('bucket_s', 10, 'buckets', jsonb_build_object("
        "(extract(epoch FROM now())::bigint / 10 * 10 - %s)::text, 3), 'newest', 0), "
        "now() - make_interval(secs => %s) FROM generate_series(%s, %s) g",
        [SPIKE["id"], tenant_id, age_s, age_s, first, first + n - 1])
    cursor.execute("VACUUM (ANALYZE) rules_windowstate")


def attempt_purges(tenant, n: int) -> list[tuple[str, float, int]]:
    """(how, seconds, WAL bytes) of purging ``n`` attempts of one past day: from its day partition,
    then from DEFAULT (the same rows on a day that has no partition)."""
    from datetime import datetime, timedelta, timezone

    from django.db import connection

    from apps.core import clock
    from apps.delivery.fastpath import ATTEMPT_PARTITIONS
    from apps.delivery.models import Delivery
    from apps.ops import folds
    from apps.ops.retention import purge_expired

    out = []
    for label, age_days, partitioned in (("day partition: DROP TABLE", 95, True),
                                         ("DEFAULT partition: DELETE by row", 93, False)):
        day = (clock.now() - timedelta(days=age_days)).date()
        if partitioned:
            ATTEMPT_PARTITIONS.ensure(day, days_ahead=0)
        at = datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc)
        deliveries = Delivery.objects.bulk_create(
            Delivery(tenant=tenant, event_type="alert.triggered", msg_id=f"bench-{age_days}-{i}", body=b"",
                     state="DELIVERED", attempts=1, created_at=at, expires_at=at) for i in range(1000))
        first = min(d.pk for d in deliveries)
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO delivery_deliveryattempt (delivery_id, number, channel, started_at, latency_ms, "
                "status_code, success, error, response_excerpt) SELECT %s + g %% 1000, 1 + g / 1000, 'webhook', "
                "%s::date + make_interval(secs => g %% 86000), 40, 200, true, '', 'ok' "
                "FROM generate_series(0, %s - 1) g", [first, day, n])
            cursor.execute("VACUUM (ANALYZE) delivery_deliveryattempt")
        # The purge deletes only folded attempts, and folds only ids older than
        # METRICS_FOLD_DELAY_SECONDS: fold them first, as if a day had passed since they were written.
        t0 = time.time()
        folds.advance(now=t0, chunk=10 * n)
        folds.advance(now=t0 + 86400, chunk=10 * n)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_current_wal_lsn()")
            lsn = cursor.fetchone()[0]
        started = time.perf_counter()
        removed = purge_expired(chunk_size=5000).removed["delivery_deliveryattempt"]
        seconds = time.perf_counter() - started
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_current_wal_lsn() - %s::pg_lsn", [lsn])
            wal = int(cursor.fetchone()[0])
        assert removed == n, (label, removed)
        out.append((label, seconds, wal))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stale", type=int, action="append", help="stale window rows (repeatable; default "
                        "200000 and 1000000)")
    parser.add_argument("--rollups", type=int, default=1_000_000)
    parser.add_argument("--attempts", type=int, default=1_000_000, help="attempts past retention (0: skip)")
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    sizes = sorted(set(args.stale or [200_000, 1_000_000]))

    reset_database(DB)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from apps.core import clock
    from apps.ops.retention import purge_expired
    from apps.rules import services, spike
    from apps.rules.models import LogRule, MetricRollup, MetricSeries, WindowState
    from apps.rules.spec import parse_rule
    from apps.tenants.models import Tenant

    call_command("migrate", verbosity=0)
    tenant = Tenant.objects.create(slug="acme", name="Acme")
    services.rule_create(raw=SPIKE, actor="bench")
    rule = LogRule.objects.get(key=SPIKE["id"])
    spec = parse_rule(rule.spec)

    def evaluation() -> tuple[float, float]:
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            counts = spike.evaluate_rule(spec, now=clock.now(), rule_version=rule.version, rule_pk=rule.pk)
            times.append((time.perf_counter() - t0) * 1000)
            assert counts["groups"] == ACTIVE, counts
        return statistics.median(times), max(times)

    with connection.cursor() as cursor:
        windows(cursor, tenant.pk, 1, ACTIVE, 120)
    base = evaluation()
    rows = []
    next_group = ACTIVE + 1
    for size in sizes:
        with connection.cursor() as cursor:
            windows(cursor, tenant.pk, next_group, size, 2 * 86400)
        next_group += size
        before = evaluation()
        t0 = time.perf_counter()
        removed = purge_expired(chunk_size=5000).removed["rules_windowstate"]
        purge_s = time.perf_counter() - t0
        assert removed == size and WindowState.objects.count() == ACTIVE, (removed, WindowState.objects.count())
        with connection.cursor() as cursor:
            cursor.execute("VACUUM (ANALYZE) rules_windowstate")
        after = evaluation()
        rows.append((size, before, purge_s, after))
        print(f"  {size:,} stale rows: evaluation {before[0]:.1f} ms, purged in {purge_s:.1f} s, "
              f"then {after[0]:.1f} ms", flush=True)

    # Metric rollups of 1,000 series that stopped sending 20 days ago.
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO rules_metricseries (tenant_id, name, labels_hash, labels, created_at) "
                       "SELECT %s, 'up', 'h' || s, jsonb_build_object('pod', 'p' || s), now() - interval '30 days' "
                       "FROM generate_series(1, 1000) s", [tenant.pk])
        per_series = max(1, args.rollups // 1000)
        cursor.execute(
            "INSERT INTO rules_metricrollup (series_id, minute, count, sum, min, max, sumsq, last, last_ts) "
            "SELECT s.id, date_trunc('minute', now()) - interval '20 days' - make_interval(mins => m), "
            "1, 1, 1, 1, 1, 1, now() - interval '20 days' FROM rules_metricseries s, generate_series(1, %s) m",
            [per_series])
        cursor.execute("VACUUM (ANALYZE) rules_metricrollup")
    total = MetricRollup.objects.count()
    t0 = time.perf_counter()
    report = purge_expired(chunk_size=5000)
    rollup_s = time.perf_counter() - t0
    assert report.removed["rules_metricrollup"] == total and report.removed["rules_metricseries"] == 1000
    assert not MetricSeries.objects.exists()

    print(f"\nRetention bench: one spike rule, {ACTIVE:,} groups active (the baseline), "
          f"{args.repeat} evaluations per state.\n")
    print(f"{'stale window rows':>17}  {'evaluation ms median / max':>27}  {'x baseline':>10}  "
          f"{'purge s (rows/s)':>20}  {'after: ms median / max':>23}  {'x baseline':>10}")
    print(f"{0:>17,}  {base[0]:>16.1f} / {base[1]:>8.1f}  {1:>10.2f}  {'-':>20}  {'-':>23}  {'-':>10}")
    for size, before, purge_s, after in rows:
        print(f"{size:>17,}  {before[0]:>16.1f} / {before[1]:>8.1f}  {before[0] / base[0]:>10.2f}  "
              f"{purge_s:>8.1f} ({size / purge_s:>9,.0f})  {after[0]:>12.1f} / {after[1]:>8.1f}  "
              f"{after[0] / base[0]:>10.2f}")
    print(f"\nMetric rollups past METRICS_RETENTION_DAYS: {total:,} rows of 1,000 stopped series purged in "
          f"{rollup_s:.1f} s ({total / rollup_s:,.0f} rows/s), the series with them.")
    if args.attempts:
        print("\nAttempts past DELIVERY_ATTEMPT_RETENTION_DAYS "
              f"({args.attempts:,} rows of 1,000 deliveries, purged with chunks of 5,000):")
        for label, seconds, wal in attempt_purges(tenant, args.attempts):
            print(f"  {label:<38} {seconds:>6.2f} s ({args.attempts / seconds:>12,.0f} rows/s), "
                  f"WAL {wal / 2**20:>7.1f} MiB")


if __name__ == "__main__":
    main()
