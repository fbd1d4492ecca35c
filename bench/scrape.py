"""/metrics scrape time at 1,000 and at 10,000,000 rows of history (issue 15: within 2x).

    .venv/bin/python bench/scrape.py [--small 1000] [--large 10000000] [--tail 500] [--scrapes 15]

For each size, a fresh database ``ac_bench_scrape`` (BENCH_PG for the server; dropped and
recreated) is migrated and filled with that many rows of history in the tables the counters read
(2/10 alerts, 2/10 webhook deliveries, 3/10 attempts, 3/10 timeline lines; spread over the last 90
days, the attempts in their day partitions; ingest batches over the last 7 days as retention keeps
them), the counter folds are brought up to date (``apps.ops.folds.advance`` with the clock moved
past METRICS_FOLD_DELAY_SECONDS, as a running system does by itself), then a recent tail of
``--tail`` alerts with their deliveries, attempts and timeline lines is added unfolded (the last
minutes' traffic, the same at both sizes). Printed per size: the median and p90 of ``--scrapes``
scrapes of GET /metrics (Django test client in this process, the whole view: fold check, snapshot,
every family), and the same scrape with the folds dropped (every counter counted from the whole
tables, as before issue 15) as the baseline.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
DB = "ac_bench_scrape"


def setup() -> None:
    import subprocess

    import psycopg

    if "django" in sys.modules and os.environ.get("DJANGO_SETTINGS_MODULE"):
        from django.db import connections

        connections.close_all()  # the previous size's database is about to go
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB}"')
    env = {**os.environ, "DATABASE_URL": f"{PG}/{DB}", "SECRET_KEY": "bench-only-secret", "DEBUG": "0",
           "CELERY_BROKER_URL": "", "CACHE_URL": "", "LOG_LEVEL": "WARNING", "ALLOWED_HOSTS": "testserver"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    os.environ.update(env, DJANGO_SETTINGS_MODULE="alertcenter.settings")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def templates() -> dict[str, int]:
    """One row per table made by the ORM; the bulk rows copy every column of it but a few."""
    from apps.alerts.models import Alert, TimelineEntry
    from apps.core import clock
    from apps.delivery.models import Delivery, DeliveryAttempt
    from apps.ingest.models import IngestBatch
    from apps.tenants.models import Tenant

    now = clock.now()
    tenants = [Tenant.objects.create(slug=f"t{i:02d}", name=f"t{i:02d}") for i in range(20)]
    alert = Alert.objects.create(tenant=tenants[0], fingerprint="template", severity="critical", title="burst",
                                 state="RESOLVED", first_seen=now, last_seen=now, created_at=now, updated_at=now,
                                 source_received_at=now)
    delivery = Delivery.objects.create(tenant=tenants[0], alert=alert, channel="webhook", event_type="alert.triggered",
                                       msg_id="template", body=b"{}", state="DELIVERED", attempts=1, created_at=now,
                                       expires_at=now, delivered_at=now)
    attempt = DeliveryAttempt.objects.create(delivery=delivery, number=1, channel="webhook", started_at=now,
                                             success=True, status_code=200)
    line = TimelineEntry.objects.create(alert=alert, at=now, kind="delivery")
    batch = IngestBatch.objects.create(tenant=tenants[0], received_at=now, event_count=100, payload=b"",
                                       status="DONE")
    return {"alert": alert.pk, "delivery": delivery.pk, "attempt": attempt.pk, "line": line.pk, "batch": batch.pk,
            "tenant0": tenants[0].pk}


def columns(table: str, overrides: dict[str, str]) -> tuple[str, str]:
    """(column list, select list) copying the template row except ``overrides`` (SQL expressions)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cols = [c.name for c in connection.introspection.get_table_description(cursor, table) if c.name != "id"]
    return ", ".join(f'"{c}"' for c in cols), ", ".join(overrides.get(c, f't."{c}"') for c in cols)


def insert_history(rows: int, start_at: str) -> float:
    """``rows`` rows of history (module docstring) by INSERT .. SELECT generate_series; seconds taken."""
    from datetime import timedelta

    from django.db import connection

    from apps.core import clock
    from apps.core.partitions import DAYS_AHEAD as PARTITION_DAYS_AHEAD
    from apps.delivery.fastpath import ATTEMPT_PARTITIONS

    t = templates()
    n_alerts, n_deliveries = max(1, rows * 2 // 10), max(1, rows * 2 // 10)
    n_attempts, n_lines = max(1, rows * 3 // 10), max(1, rows * 3 // 10)
    span = "interval '90 days'"
    # The attempt log's day partitions over those 90 days, as beat made them day after day (a fresh
    # database has them from today on only; the rest would all land in DEFAULT).
    ATTEMPT_PARTITIONS.ensure(clock.now().date() - timedelta(days=91), days_ahead=91 + PARTITION_DAYS_AHEAD)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
        cursor.execute("SELECT max(id) FROM alerts_alert")
        first_alert = cursor.fetchone()[0] + 1
        cols, sel = columns("alerts_alert", {
            "fingerprint": "'h' || g", "tenant_id": f"{t['tenant0']} + g % 20",
            "severity": "(ARRAY['critical','error','warning','info'])[1 + g % 4]",
            "created_at": f"{start_at} + {span} * g / {n_alerts}", "updated_at": f"{start_at} + {span} * g / {n_alerts}",
            "source_received_at": f"{start_at} + {span} * g / {n_alerts} - interval '1 ms' * (g % 5000)"})
        cursor.execute(f"INSERT INTO alerts_alert ({cols}) SELECT {sel} FROM alerts_alert t, "
                       f"generate_series(1, {n_alerts}) g WHERE t.id = {t['alert']}")
        cursor.execute("SELECT max(id) FROM delivery_delivery")
        first_delivery = cursor.fetchone()[0] + 1
        cols, sel = columns("delivery_delivery", {
            "msg_id": "'h' || g", "alert_id": f"{first_alert} + (g - 1) % {n_alerts}",
            "tenant_id": f"{t['tenant0']} + (g - 1) % {n_alerts} % 20",
            "created_at": f"{start_at} + {span} * g / {n_deliveries}",
            "delivered_at": f"{start_at} + {span} * g / {n_deliveries} + interval '1 ms' * (g % 3000)",
            "downgraded_at": f"CASE WHEN g % 100 = 0 THEN {start_at} + {span} * g / {n_deliveries} END"})
        cursor.execute(f"INSERT INTO delivery_delivery ({cols}) SELECT {sel} FROM delivery_delivery t, "
                       f"generate_series(1, {n_deliveries}) g WHERE t.id = {t['delivery']}")
        cols, sel = columns("delivery_deliveryattempt", {
            "delivery_id": f"{first_delivery} + (g - 1) % {n_deliveries}", "number": "1 + g % 3",
            "success": "g % 7 <> 0", "started_at": f"{start_at} + {span} * g / {n_attempts}"})
        cursor.execute(f"INSERT INTO delivery_deliveryattempt ({cols}) SELECT {sel} FROM delivery_deliveryattempt t, "
                       f"generate_series(1, {n_attempts}) g WHERE t.id = {t['attempt']}")
        cols, sel = columns("alerts_timelineentry", {
            "alert_id": f"{first_alert} + (g - 1) % {n_alerts}", "at": f"{start_at} + {span} * g / {n_lines}",
            "kind": "CASE WHEN g % 10 = 0 THEN 'acknowledged' WHEN g % 25 = 0 THEN 'escalated' ELSE 'delivery' END"})
        cursor.execute(f"INSERT INTO alerts_timelineentry ({cols}) SELECT {sel} FROM alerts_timelineentry t, "
                       f"generate_series(1, {n_lines}) g WHERE t.id = {t['line']}")
        # Ingest batches: retention keeps 7 days of them (not history that grows): up to 10 a minute.
        n_batches = min(rows // 10, 7 * 24 * 600)
        cols, sel = columns("ingest_ingestbatch", {
            "tenant_id": f"{t['tenant0']} + g % 20", "received_at": f"now() - interval '7 days' * g / {n_batches}"})
        cursor.execute(f"INSERT INTO ingest_ingestbatch ({cols}) SELECT {sel} FROM ingest_ingestbatch t, "
                       f"generate_series(1, {n_batches}) g WHERE t.id = {t['batch']}")
    return time.perf_counter() - started


def fold_up(delay: int) -> tuple[float, int]:
    """Advance every fold until it stops moving, the clock moved past the delay; (seconds, runs)."""
    from apps.ops import folds

    started, runs, t = time.perf_counter(), 0, time.time()
    before = None
    while True:
        folds.advance(now=t)
        t += delay + 1
        now = folds.advance(now=t)
        runs += 1
        if now == before:
            return time.perf_counter() - started, runs
        before = now


def vacuum() -> None:
    import psycopg

    with psycopg.connect(f"{PG}/{DB}", autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def scrape_times(n: int) -> list[float]:
    from django.test import Client

    client, out = Client(), []
    for _ in range(n):
        started = time.perf_counter()
        response = client.get("/metrics")
        out.append(time.perf_counter() - started)
        assert response.status_code == 200 and b"monitoring_metrics_collect_success 1.0" in response.content, \
            response.content[-500:]
    return out


def unfolded_times(n: int) -> list[float]:
    """The same scrape with no fold (every counter over the whole tables), rolled back after."""
    from django.db import transaction

    from apps.core.models import MetricFold, MetricRollup

    with transaction.atomic():
        MetricFold.objects.all().delete()
        MetricRollup.objects.filter(name__startswith="fold:").delete()
        times = scrape_times(n)
        transaction.set_rollback(True)
    return times


def measure(rows: int, tail: int, scrapes: int) -> dict:
    setup()
    from django.conf import settings

    from apps.ops import folds

    seeded = insert_history(rows, "now() - interval '91 days'")
    vacuum()
    folded, runs = fold_up(settings.METRICS_FOLD_DELAY_SECONDS)
    _tail(tail)
    vacuum()
    folds._last_run["all"] = time.time() + 3600  # the measured scrapes do not fold (measured above)
    scrape_times(2)  # warm-up: code paths, caches
    return {"rows": rows, "seeded": seeded, "folded": folded, "fold_runs": runs, "scrapes": scrape_times(scrapes),
            "unfolded": unfolded_times(max(3, scrapes // 5))}


def _tail(n: int) -> None:
    """``n`` recent alerts, each with a delivery, an attempt and an acknowledgement, unfolded."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT max(id) FROM alerts_alert")
        first_alert = cursor.fetchone()[0] + 1
        cursor.execute("SELECT id FROM alerts_alert ORDER BY id LIMIT 1")
        template = cursor.fetchone()[0]
        cols, sel = columns("alerts_alert", {"fingerprint": "'tail' || g", "created_at": "now()",
                                             "source_received_at": "now() - interval '300 ms'"})
        cursor.execute(f"INSERT INTO alerts_alert ({cols}) SELECT {sel} FROM alerts_alert t, "
                       f"generate_series(1, {n}) g WHERE t.id = {template}")
        cursor.execute("SELECT id FROM delivery_delivery ORDER BY id LIMIT 1")
        template = cursor.fetchone()[0]
        cursor.execute("SELECT max(id) FROM delivery_delivery")
        first_delivery = cursor.fetchone()[0] + 1
        cols, sel = columns("delivery_delivery", {"msg_id": "'tail' || g", "alert_id": f"{first_alert} + g - 1",
                                                  "created_at": "now()", "delivered_at": "now()"})
        cursor.execute(f"INSERT INTO delivery_delivery ({cols}) SELECT {sel} FROM delivery_delivery t, "
                       f"generate_series(1, {n}) g WHERE t.id = {template}")
        cursor.execute("SELECT id FROM delivery_deliveryattempt ORDER BY id LIMIT 1")
        template = cursor.fetchone()[0]
        cols, sel = columns("delivery_deliveryattempt", {"delivery_id": f"{first_delivery} + g - 1",
                                                         "started_at": "now()"})
        cursor.execute(f"INSERT INTO delivery_deliveryattempt ({cols}) SELECT {sel} FROM delivery_deliveryattempt t, "
                       f"generate_series(1, {n}) g WHERE t.id = {template}")
        cursor.execute("SELECT id FROM alerts_timelineentry ORDER BY id LIMIT 1")
        template = cursor.fetchone()[0]
        cols, sel = columns("alerts_timelineentry", {"alert_id": f"{first_alert} + g - 1", "at": "now()",
                                                     "kind": "'acknowledged'"})
        cursor.execute(f"INSERT INTO alerts_timelineentry ({cols}) SELECT {sel} FROM alerts_timelineentry t, "
                       f"generate_series(1, {n}) g WHERE t.id = {template}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=10_000_000)
    parser.add_argument("--tail", type=int, default=500)
    parser.add_argument("--scrapes", type=int, default=15)
    args = parser.parse_args()
    results = []
    for rows in (args.small, args.large):
        print(f"{rows:,} rows of history ...", flush=True)
        results.append(measure(rows, args.tail, args.scrapes))

    def ms(values: list[float], p: float) -> float:
        values = sorted(values)
        return 1000 * values[min(len(values) - 1, int(round(p * (len(values) - 1))))]

    print(f"\n/metrics scrape, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"a tail of {args.tail} unfolded alerts (+ delivery, attempt, timeline line each) at both sizes")
    print(f"{'history rows':>14}  {'seed s':>7}  {'fold s (runs)':>13}  {'scrape p50 / p90 ms':>20}  "
          f"{'without folds p50 ms':>21}")
    for r in results:
        print(f"{r['rows']:>14,}  {r['seeded']:>7.1f}  {r['folded']:>8.1f} ({r['fold_runs']:>2})  "
              f"{ms(r['scrapes'], .5):>9.1f} / {ms(r['scrapes'], .9):>7.1f}  {statistics.median(r['unfolded']) * 1000:>21.1f}")
    small, large = (statistics.median(r["scrapes"]) for r in results)
    print(f"ratio large / small: {large / small:.2f}x (target <= 2x); without folds: "
          f"{statistics.median(results[1]['unfolded']) / statistics.median(results[0]['unfolded']):.1f}x")


if __name__ == "__main__":
    main()
