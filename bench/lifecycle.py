"""Acknowledge/resolve latency with 100,000 alerts in the table, through the service and the API.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/alertcenter .venv/bin/python bench/lifecycle.py

By default it creates (and afterwards drops) its own database ``<name>_bench_lifecycle`` on that
server, so it never touches real data; ``--in-place`` uses the given database as it is (migrated)
and deletes its bench tenant at the end. It prints p50/p95/p99 per operation and a baseline
measured in the same run (a bare ``UPDATE ... WHERE id=`` through the ORM), with the ratio.
Target: acknowledge and resolve p50 under 50 ms.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--alerts", type=int, default=100_000, help="rows in the alert table (default 100000)")
    p.add_argument("--ops", type=int, default=300, help="timed calls per operation (default 300)")
    p.add_argument("--in-place", action="store_true", help="use DATABASE_URL as it is instead of a fresh database")
    p.add_argument("--keep", action="store_true", help="keep the bench database afterwards")
    return p.parse_args()


def fresh_database(url: str) -> tuple[str, str]:
    """Create ``<db>_bench_lifecycle`` next to the given database; returns (new url, name)."""
    import psycopg

    parts = urlsplit(url)
    name = (parts.path.lstrip("/") or "alertcenter") + "_bench_lifecycle"
    admin = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path=f"/{name}")), name


def drop_database(url: str, name: str) -> None:
    import psycopg

    admin = urlunsplit(urlsplit(url)._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def report(name: str, samples: list[float], baseline: float | None = None) -> float:
    p50 = statistics.median(samples)
    ratio = f"  x{p50 / baseline:5.1f} baseline" if baseline else ""
    print(f"  {name:<28} p50 {p50:7.2f} ms   p95 {pct(samples, 95):7.2f} ms   p99 {pct(samples, 99):7.2f} ms{ratio}")
    return p50


def timed(fn, items) -> list[float]:
    out = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> int:
    args = parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        print("DATABASE_URL must point at PostgreSQL, e.g. postgres://postgres@127.0.0.1:5432/alertcenter")
        return 2
    created = None
    if not args.in_place:
        os.environ["DATABASE_URL"], created = fresh_database(url)
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alertcenter.settings")
    import warnings

    import django

    warnings.filterwarnings("ignore", message="No directory at")  # whitenoise: no collectstatic needed here
    django.setup()
    from django.core.management import call_command

    try:
        if created:
            call_command("migrate", verbosity=0)
        return run(args)
    finally:
        from django.db import connections

        connections.close_all()
        if created and not args.keep:
            drop_database(url, created)


def run(args) -> int:
    from datetime import timedelta

    from django.db import connection
    from rest_framework.test import APIClient

    from apps.alerts import services
    from apps.alerts.models import Alert, AlertState
    from apps.core import clock
    from apps.tenants.models import Plugin, Tenant
    from apps.tenants.tokens import issue_token

    slug = f"bench-{int(time.time())}"
    tenant = Tenant.objects.create(slug=slug, name="Bench")
    plugins = [Plugin.objects.create(tenant=tenant, slug=f"p{i}") for i in range(20)]
    now = clock.now()
    print(f"PostgreSQL {connection.pg_version // 10000}, inserting {args.alerts:,} alerts ...", flush=True)
    start = time.perf_counter()
    severities = ["info", "warning", "critical", "emergency"]
    batch = []
    for i in range(args.alerts):
        # Most alerts are historical (RESOLVED); the rest are open: the mix a real table has.
        state = AlertState.OPEN if i % 4 == 0 else AlertState.RESOLVED
        at = now - timedelta(seconds=args.alerts - i)
        batch.append(Alert(
            tenant=tenant, plugin=plugins[i % len(plugins)], rule_key=f"rule-{i % 50}", fingerprint=f"{slug}-{i}",
            state=state, severity=severities[i % 4], title=f"Bench alert {i}", summary="error burst", count=1,
            first_seen=at, last_seen=at, created_at=at, updated_at=at,
            resolved_at=at if state == AlertState.RESOLVED else None))
        if len(batch) == 5000:
            Alert.objects.bulk_create(batch)
            batch = []
    Alert.objects.bulk_create(batch)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE alerts_alert")
    print(f"  inserted in {time.perf_counter() - start:.1f}s; table has {Alert.objects.count():,} alerts\n")

    open_ids = list(Alert.objects.filter(tenant=tenant, state=AlertState.OPEN).values_list("pk", flat=True))
    random.seed(7)
    random.shuffle(open_ids)
    n = args.ops
    if len(open_ids) < 4 * n + n:
        print(f"need at least {5 * n} open alerts; lower --ops")
        return 2
    svc_ack, svc_res, api_ack, api_res = (open_ids[i * n:(i + 1) * n] for i in range(4))
    base_ids = open_ids[4 * n:5 * n]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_token(name='bench', scopes='alerts:read,alerts:write', tenant=tenant)[1]}")

    def api_post(path: str):
        def call(alert_id: int):
            resp = client.post(f"/api/v1/alerts/{alert_id}/{path}", {}, format="json")
            assert resp.status_code == 200, resp.content
        return call

    # Warm up connections, caches and code paths outside the measurement.
    for alert_id in open_ids[5 * n:5 * n + 20]:
        services.alert_acknowledge(alert_id=alert_id, actor=None)
        api_post("resolve")(alert_id)

    baseline = timed(lambda i: Alert.objects.filter(pk=i).update(updated_at=clock.now()), base_ids)
    results = {
        "service acknowledge": timed(lambda i: services.alert_acknowledge(alert_id=i, actor=None), svc_ack),
        "service resolve": timed(lambda i: services.alert_resolve(alert_id=i, actor=None), svc_res),
        "API POST /ack": timed(api_post("ack"), api_ack),
        "API POST /resolve": timed(api_post("resolve"), api_res),
    }
    print(f"{n} calls each, {Alert.objects.count():,} alerts in the table:")
    base_p50 = report("baseline bare UPDATE by id", baseline)
    worst = max(report(name, samples, base_p50) for name, samples in results.items())
    ok = worst < 50
    print(f"\n{'PASS' if ok else 'FAIL'}: slowest p50 {worst:.2f} ms (target < 50 ms)")
    if args.in_place:
        Tenant.objects.filter(pk=tenant.pk).delete()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
