"""The sweeper behind a dead endpoint: one sweep's time with W rows waiting behind a downgraded
webhook endpoint, against the same sweep with none waiting (the baseline, same run).

    .venv/bin/python bench/breaker.py [--waiting 100000 --waiting 500000] [--sweeps 7] [--dead 100 --dead 1000]

A dead endpoint of a busy tenant collects up to DELIVERY_MAX_AGE_SECONDS (24 h) of alerts; the
sweeper runs every 2 s for every tenant. Per W (default 0, 100,000 and 500,000), with another
tenant's 50 retries due at every sweep:

* sweep ms (median / max of ``--sweeps``): ``dispatch.sweep()`` whole (due scan, probe, stuck scan,
  claim, the breaker's upkeep), its deliver tasks not published, the claimed rows put back after
  each so every sweep has the same work;
* restored: the endpoint answers again; each sweep makes its next 500 waiting rows due and rings
  them (``breaker.drain``), and still claims the other tenant's retries;
* due scan: the sweeper's due query alone (``dispatch.due_rows``), its time and the rows it read
  (EXPLAIN ANALYZE: returned or filtered out by its scans of the deliveries), with the rows parked
  as written, and with the same rows left in the due range with a past ``next_attempt_at``: the
  layout before parked rows (the twelfth round's breaker left them there and stepped over them at
  every sweep).
* dead endpoints (``--dead``, default 100 and 1,000; 0 skips): one sweep with D downgraded
  endpoints, each with 5 rows parked and its next probe not due yet (a platform's abandoned
  receivers between their probes), against the same sweep with one such endpoint; then the sweep
  with all D due for a probe at once (endpoints downgraded together, paced alike).

Database ``ac_breaker_bench`` (dropped and recreated; ``BENCH_DB`` to change), Redis db 15.
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
DB = os.environ.get("BENCH_DB", "postgres://postgres@127.0.0.1:5432/ac_breaker_bench")
os.environ.update(DATABASE_URL=DB, REDIS_URL=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"),
                  DEBUG="0", LOG_LEVEL="ERROR", LOG_FORMAT="text", CELERY_BROKER_URL="", CACHE_URL="",
                  WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alertcenter.settings")


def reset_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def fire(tenant, title: str):
    """One alert with its outbox rows, as the alert services write them."""
    from django.db import transaction
    from django.utils import timezone

    from apps.alerts.history import emit
    from apps.alerts.models import Alert

    now = timezone.now()
    with transaction.atomic():
        alert = Alert.objects.create(tenant=tenant, fingerprint=f"bench-{time.time_ns()}", severity="critical",
                                     title=title, summary="bench", first_seen=now, last_seen=now, count=1,
                                     created_at=now, updated_at=now)
        emit(alert, "alert.triggered", {})
    return alert


def grow(template_id: int, n: int) -> None:
    """``n`` more parked rows like ``template_id`` (one INSERT ... SELECT)."""
    from django.db import connection

    from apps.delivery.models import Delivery

    if n <= 0:
        return
    cols = [f.column for f in Delivery._meta.concrete_fields if f.column not in ("id", "msg_id")]
    listed = ", ".join(cols)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO delivery_delivery ({listed}, msg_id) SELECT {listed}, 'bench-' || g || '-' || md5(random()::text)"
            " FROM delivery_delivery, generate_series(1, %s) g WHERE id = %s", [n, template_id])


def vacuum() -> None:
    """Clear the dead index entries the bench's own resets leave (autovacuum's job in a real run),
    so each figure reads the layout it names and not the churn of the one before."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) delivery_delivery")


def due_scan() -> tuple[float, int]:
    """The due query's time (ms, median of 3) and the deliveries' rows it read."""
    import json

    from django.utils import timezone

    from apps.delivery import dispatch

    vacuum()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        list(dispatch.due_rows(timezone.now(), 500))
        times.append((time.perf_counter() - t0) * 1000)
    plan = json.loads(dispatch.due_rows(timezone.now(), 500).explain(analyze=True, format="json"))

    def rows_read(node) -> int:
        """Rows the scans of the deliveries table produced or filtered out, whatever the plan."""
        own = 0
        if node.get("Relation Name") == "delivery_delivery":
            # EXPLAIN gives each figure per loop (a parallel scan's workers are its loops).
            own = node.get("Actual Loops", 1) * (node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
                                                 + node.get("Rows Removed by Index Recheck", 0))
        return own + sum(rows_read(child) for child in node.get("Plans", []))

    return statistics.median(times), rows_read(plan[0]["Plan"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--waiting", type=int, action="append", help="rows waiting (repeatable; default 100000 "
                                                                      "and 500000; 0 always runs first)")
    parser.add_argument("--sweeps", type=int, default=7)
    parser.add_argument("--dead", type=int, action="append", help="downgraded endpoints, each with 5 parked rows "
                                                                   "(repeatable; default 100 and 1000; 0 skips)")
    args = parser.parse_args()
    dead_sizes = sorted(set(args.dead or [100, 1000]) - {0})
    sizes = [0] + sorted(set(args.waiting or [100_000, 500_000]) - {0})

    reset_database(DB)
    import django

    django.setup()
    from django.core.management import call_command
    from django.utils import timezone

    from apps.delivery import dispatch
    from apps.delivery import tasks as deliver_tasks
    from apps.delivery.models import Delivery, WebhookEndpoint
    from apps.delivery.services import create_endpoint
    from apps.tenants.models import Tenant

    call_command("migrate", verbosity=0)
    deliver_tasks.deliver_batch.delay = lambda *a, **k: None  # the sweep is measured, not the sends
    dead_tenant = Tenant.objects.create(slug="dead", name="dead")
    dead, _ = create_endpoint(tenant=dead_tenant, url="http://127.0.0.1:9/dead", event_types=["alert.triggered"])
    WebhookEndpoint.objects.filter(pk=dead.pk).update(failure_streak=3, downgraded_at=timezone.now())
    template = Delivery.objects.get(alert=fire(dead_tenant, "waiting"))
    assert template.next_attempt_at is None, "a row behind the breaker should be written parked"
    ok_tenant = Tenant.objects.create(slug="ok", name="ok")
    ok, _ = create_endpoint(tenant=ok_tenant, url="http://127.0.0.1:9/ok", event_types=["alert.triggered"])
    retries = [Delivery.objects.get(alert=fire(ok_tenant, f"retry {i}")).pk for i in range(50)]

    def make_retries_due() -> None:
        Delivery.objects.filter(pk__in=retries).update(state="PENDING", attempts=1, claim_token="",
                                                        next_attempt_at=timezone.now())

    rows = []
    have = 1
    for waiting in sizes:
        grow(template.pk, waiting - have)
        have = max(have, waiting)
        vacuum()
        times = []
        for _ in range(args.sweeps):
            make_retries_due()
            t0 = time.perf_counter()
            claimed = dispatch.sweep()["claimed"]
            times.append((time.perf_counter() - t0) * 1000)
            assert claimed >= 50, f"the other tenant's retries were not all claimed ({claimed})"
            Delivery.objects.filter(endpoint=dead, state="SENDING").update(state="DOWNGRADED", claim_token="")
        make_retries_due()
        parked_ms, parked_read = due_scan()
        Delivery.objects.filter(endpoint=dead, state="DOWNGRADED").update(next_attempt_at=timezone.now())
        due_ms, due_read = due_scan()
        Delivery.objects.filter(endpoint=dead, state="DOWNGRADED").update(next_attempt_at=None)
        rows.append((waiting, statistics.median(times), max(times), parked_ms, parked_read, due_ms, due_read))
        print(f"  {waiting:,} waiting: sweep {statistics.median(times):.1f} ms", flush=True)

    # The endpoint answers again (restored as by the tenant): each sweep makes the next chunk due and
    # rings it (breaker.drain); the bench then marks it sent, as the deliver tasks would.
    WebhookEndpoint.objects.filter(pk=dead.pk).update(downgraded_at=None, failure_streak=0, next_probe_at=None)
    vacuum()
    drains = []
    for _ in range(args.sweeps):
        make_retries_due()
        t0 = time.perf_counter()
        claimed = dispatch.sweep()["claimed"]
        drains.append(((time.perf_counter() - t0) * 1000, claimed))
        sent = Delivery.objects.filter(endpoint=dead, state__in=["PENDING", "DOWNGRADED"], next_attempt_at__isnull=False)
        drains[-1] += (sent.update(state="DELIVERED", next_attempt_at=None),)

    dead_rows = dead_endpoints(dead_tenant, dead_sizes, args.sweeps) if dead_sizes else []

    base = rows[0][1]
    print(f"\nBreaker bench: one downgraded endpoint with W rows waiting, another tenant's 50 retries due at "
          f"each sweep; {args.sweeps} sweeps per W.\n")
    print(f"{'rows waiting':>13}  {'sweep ms median / max':>22}  {'x baseline':>10}  "
          f"{'due scan parked: ms / rows read':>32}  {'left due (before): ms / rows read':>35}")
    for waiting, med, top, p_ms, p_read, d_ms, d_read in rows:
        print(f"{waiting:>13,}  {med:>12.1f} / {top:>7.1f}  {med / base:>10.2f}  {p_ms:>20.1f} / {p_read:>9,}  "
              f"{d_ms:>23.1f} / {d_read:>9,}")
    times = [ms for ms, _, _ in drains]
    print(f"\nThe endpoint restored with {sizes[-1]:,} waiting: sweep {statistics.median(times):.1f} / "
          f"{max(times):.1f} ms (median / max, {statistics.median(times) / base:.2f} x baseline); per sweep the "
          f"other tenant's retries claimed {' / '.join(str(n) for _, n, _ in drains)} and waiting rows made due and "
          f"rung {' / '.join(str(n) for _, _, n in drains)}")
    if dead_rows:
        print(f"\n{'dead endpoints':>15}  {'sweep ms median / max':>22}  {'x one endpoint':>14}  "
              f"{'all due for a probe: ms median / max':>37}")
        for count, med, top, p_med, p_top in dead_rows:
            print(f"{count:>15,}  {med:>12.1f} / {top:>7.1f}  {med / dead_rows[0][1]:>14.2f}  "
                  f"{p_med:>27.1f} / {p_top:>7.1f}")


def dead_endpoints(tenant, sizes: list[int], sweeps: int) -> list[tuple[int, float, float, float, float]]:
    """The sweep with 1 and then each of ``sizes`` downgraded endpoints of ``tenant``, each with 5
    parked rows: with its next probe an hour away, then with all of them due for a probe (endpoints,
    median and max ms of each)."""
    from datetime import timedelta

    from django.db import connection
    from django.utils import timezone

    from apps.delivery import dispatch
    from apps.delivery.models import Delivery, WebhookEndpoint
    from apps.delivery.services import create_endpoint

    with connection.cursor() as cursor:  # the table part's rows gone (its endpoints too)
        cursor.execute("TRUNCATE delivery_delivery, delivery_webhookendpoint CASCADE")
    first, _ = create_endpoint(tenant=tenant, url="http://127.0.0.1:9/dead-0", event_types=["alert.triggered"])
    WebhookEndpoint.objects.filter(pk=first.pk).update(failure_streak=3, downgraded_at=timezone.now())
    template = Delivery.objects.get(alert=fire(tenant, "parked"))
    grow(template.pk, 4)
    endpoint_cols = [f.column for f in WebhookEndpoint._meta.concrete_fields if f.column != "id"]
    row_cols = [f.column for f in Delivery._meta.concrete_fields if f.column not in ("id", "msg_id", "endpoint_id")]
    out, have = [], 1
    for count in [1, *sizes]:
        with connection.cursor() as cursor:
            if count > have:  # more endpoints like the first, each with copies of its 5 rows
                cursor.execute(
                    f"INSERT INTO delivery_webhookendpoint ({', '.join(endpoint_cols)}) SELECT {', '.join(endpoint_cols)}"
                    " FROM delivery_webhookendpoint, generate_series(1, %s) WHERE id = %s RETURNING id",
                    [count - have, first.pk])
                new = [row[0] for row in cursor.fetchall()]
                cursor.execute(
                    f"INSERT INTO delivery_delivery ({', '.join(row_cols)}, endpoint_id, msg_id) SELECT "
                    f"{', '.join('d.' + c for c in row_cols)}, e.id, 'bench-' || e.id || '-' || d.id FROM "
                    "delivery_delivery d, unnest(%s::bigint[]) e(id) WHERE d.endpoint_id = %s", [new, first.pk])
                have = count
        WebhookEndpoint.objects.update(next_probe_at=timezone.now() + timedelta(hours=1))
        vacuum()
        with connection.cursor() as cursor:
            cursor.execute("VACUUM (ANALYZE) delivery_webhookendpoint")
        times = []
        for _ in range(sweeps):
            t0 = time.perf_counter()
            dispatch.sweep()
            times.append((time.perf_counter() - t0) * 1000)
        # Then every one of them due for its probe at once (downgraded together, paced alike): the
        # sweep claims a probe each; put back after each sweep, as a failed probe would leave it.
        WebhookEndpoint.objects.update(next_probe_at=None)
        probing = []
        for _ in range(sweeps):
            t0 = time.perf_counter()
            claimed = dispatch.sweep()["claimed"]
            probing.append((time.perf_counter() - t0) * 1000)
            assert claimed == count, f"{claimed} probes claimed for {count} endpoints"
            Delivery.objects.filter(state="SENDING").update(state="DOWNGRADED", claim_token="")
        out.append((count, statistics.median(times), max(times), statistics.median(probing), max(probing)))
        print(f"  {count:,} dead endpoints: sweep {statistics.median(times):.1f} ms", flush=True)
    return out


if __name__ == "__main__":
    main()
