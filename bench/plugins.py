"""Intake's plugin limit as tenants grow: admitting a request's new plugins with P plugins per
tenant already registered, against P = 0 (the baseline, same run).

    .venv/bin/python bench/plugins.py [--plugins 2000 --plugins 20000] [--tenants 50] [--repeat 15]

Per P (0 always first): ``tenancy.admit_plugins`` for a request of 100 new plugins across all
tenants (one log batch of a storm of new plugins: lock the tenants, read their counts, insert),
median / max of ``--repeat``, each in a transaction rolled back so every repetition has the same
work; and, in the same state, the count the admission ran before ``PluginCount`` (the tenants'
plugins counted at every such request), timed alone.

Database ``ac_plugins_bench`` (dropped and recreated; ``BENCH_DB`` to change), Redis db 15.
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
DB = os.environ.get("BENCH_DB", "postgres://postgres@127.0.0.1:5432/ac_plugins_bench")
os.environ.update(DATABASE_URL=DB, REDIS_URL=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"),
                  DEBUG="0", LOG_LEVEL="ERROR", LOG_FORMAT="text", CELERY_BROKER_URL="", CACHE_URL="",
                  TENANT_MAX_PLUGINS="1000000")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alertcenter.settings")

BATCH = 100


def reset_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


class _Rollback(Exception):
    pass


def timed(fn, repeat: int) -> list[float]:
    """``fn`` ``repeat`` times, each in a transaction rolled back; ms each."""
    from django.db import transaction

    from apps.ingest import tenancy

    times = []
    for _ in range(repeat):
        tenancy.clear_caches()
        try:
            with transaction.atomic():
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1000)
                raise _Rollback
        except _Rollback:
            pass
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plugins", type=int, action="append",
                        help="plugins per tenant (repeatable; default 2000 and 20000; 0 always runs first)")
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    sizes = [0] + sorted(set(args.plugins or [2_000, 20_000]) - {0})

    reset_database(DB)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Count

    from apps.ingest import tenancy
    from apps.tenants.models import Plugin, PluginCount, Tenant

    call_command("migrate", verbosity=0)
    tenants = [Tenant.objects.create(slug=f"t{i}", name=f"T{i}").pk for i in range(args.tenants)]
    request = [(tenants[i % len(tenants)], f"new-{i}") for i in range(BATCH)]

    def admit() -> None:
        assert tenancy.admit_plugins(request) == {}

    def count_before() -> None:  # the statement admit_plugins ran before PluginCount
        list(Plugin.objects.filter(tenant_id__in=tenants).order_by().values("tenant_id")
             .annotate(n=Count("id")).values_list("tenant_id", "n"))

    rows, have = [], 0
    for size in sizes:
        with connection.cursor() as cursor:
            if size > have:
                cursor.execute("INSERT INTO tenants_plugin (tenant_id, slug, name, owner, created_at) "
                               "SELECT t, 'p' || g, '', '', now() FROM unnest(%s::bigint[]) t, "
                               "generate_series(%s, %s) g", [tenants, have + 1, size])
                have = size
            cursor.execute("VACUUM (ANALYZE) tenants_plugin")
            cursor.execute("VACUUM (ANALYZE) tenants_plugincount")
        assert set(PluginCount.objects.values_list("n", flat=True)) == ({size} if size else set())
        admit_ms, count_ms = timed(admit, args.repeat), timed(count_before, args.repeat)
        rows.append((size, statistics.median(admit_ms), max(admit_ms), statistics.median(count_ms), max(count_ms)))
        print(f"  {size:,} plugins per tenant: admission {statistics.median(admit_ms):.1f} ms", flush=True)

    base = rows[0][1]
    print(f"\nPlugin limit bench: {args.tenants} tenants, a request of {BATCH} new plugins across them; "
          f"{args.repeat} repetitions per size.\n")
    print(f"{'plugins per tenant':>18}  {'admission ms median / max':>26}  {'x baseline':>10}  "
          f"{'the count before, alone: ms median / max':>41}")
    for size, med, top, c_med, c_top in rows:
        print(f"{size:>18,}  {med:>15.1f} / {top:>8.1f}  {med / base:>10.2f}  {c_med:>30.1f} / {c_top:>8.1f}")


if __name__ == "__main__":
    main()
