"""Delivery throughput bench: real worker, real local receiver, the full outbox -> attempt path.

    .venv/bin/python bench/delivery.py [--alerts 3000] [--flaky-alerts 1000] [--concurrency 4]

Uses DATABASE_URL (default postgres://postgres@127.0.0.1:5432/ac_delivery_bench: dropped, created and
migrated at every run, so no endpoint or delivery of an earlier run is retried during this one) and
REDIS_URL (default redis://127.0.0.1:6379/15, flushed). Prints one table:

* baseline: a bare ``requests.post`` loop to the same receiver (one client, no database, no signing);
* alert side: N alerts written with their outbox rows in transactions of 100 (as the detect worker
  would) while the worker does not consume the deliver queue;
* drain: the worker starts consuming those N queued deliveries; time until every one is DELIVERED
  (signed, attempt row, alert state, timeline, audit) -> deliveries/s and the ratio to the baseline;
* end to end: N more alerts written while the worker sends, until all DELIVERED (bounded by
  whichever side is slower);
* under a receiver failing 30 % at random (retry schedule 1 s): initial and cumulative success,
  retries, downgrades.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ac_delivery_bench")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
os.environ.update(DEBUG="0", LOG_LEVEL="WARNING", LOG_FORMAT="text", CELERY_BROKER_URL="", CACHE_URL="",
                  WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8", DELIVERY_RETRY_SCHEDULE="1,1,1")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alertcenter.settings")

RECEIVER = """
import sys
sys.path.insert(0, {root!r})
from apps.delivery.simulator import Simulator, SimulatorConfig
sim = Simulator("127.0.0.1", {port}, SimulatorConfig(fail_rate={fail}, quiet=True, seed=1))
sim.server.serve_forever(0.2)
"""


def reset_database(url: str) -> None:
    """Drop and recreate the bench database: every run starts without endpoints or deliveries."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_receiver(fail: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", RECEIVER.format(root=str(ROOT), port=port, fail=fail)],
                            cwd=ROOT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/bench"
    import requests

    for _ in range(100):
        try:
            requests.post(url, data=b"{}", timeout=1)
            return proc, url
        except requests.ConnectionError:
            time.sleep(0.1)
    raise SystemExit("receiver did not start")


def baseline(url: str, n: int) -> float:
    import requests

    start = time.perf_counter()
    for i in range(n):
        requests.post(url, data=b'{"type":"bench"}', headers={"webhook-id": f"base_{i}"}, timeout=10)
    return n / (time.perf_counter() - start)


def fire(tenant, n: int, batch: int = 100) -> None:
    from django.db import transaction
    from django.utils import timezone

    from apps.alerts.history import emit_many
    from apps.alerts.models import Alert

    for start in range(0, n, batch):
        now = timezone.now()
        with transaction.atomic():
            rows = Alert.objects.bulk_create([
                Alert(tenant=tenant, fingerprint=f"bench-{time.time_ns()}-{i}", severity="critical",
                      title=f"bench {start + i}", summary="bench", first_seen=now, last_seen=now, count=1,
                      created_at=now, updated_at=now)
                for i in range(min(batch, n - start))])
            for alert in rows:
                alert.tenant = tenant
            emit_many([(alert, {}) for alert in rows], "alert.triggered")


def wait_delivered(endpoint, n: int, timeout: float = 600) -> float:
    from apps.delivery.models import Delivery

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = Delivery.objects.filter(endpoint=endpoint, state="DELIVERED").count()
        if done >= n:
            return time.perf_counter()
        time.sleep(0.05)
    raise SystemExit(f"timed out: {done}/{n} delivered")


from proc_cpu import cpu_seconds  # noqa: E402  (bench/ is on sys.path when run as a script)


def consume(app, hostname: str, on: bool) -> None:
    """Start/stop the worker consuming the deliver queue (remote control; waits for its reply)."""
    if on:
        replies = app.control.add_consumer("deliver", destination=[hostname], reply=True, timeout=10)
    else:
        replies = app.control.cancel_consumer("deliver", destination=[hostname], reply=True, timeout=10)
    if not replies:
        raise SystemExit(f"the worker did not answer {'add' if on else 'cancel'}_consumer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alerts", type=int, default=3000, help="alerts for the drain and for the end-to-end run")
    parser.add_argument("--flaky-alerts", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--baseline-requests", type=int, default=2000)
    args = parser.parse_args()

    reset_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    import redis
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from alertcenter.celery import app
    from apps.delivery import dispatch, selectors
    from apps.delivery.services import create_endpoint
    from apps.tenants.models import Tenant

    call_command("migrate", verbosity=0)
    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    procs: list[subprocess.Popen] = []
    stop = threading.Event()
    hostname = f"bench-{os.getpid()}@{socket.gethostname()}"

    def sweep_loop() -> None:
        while not stop.wait(0.5):
            dispatch.sweep()
        connection.close()

    def endpoint(slug: str, url: str):
        tenant = Tenant.objects.create(slug=slug, name=slug)
        ep, _ = create_endpoint(tenant=tenant, url=url, event_types=["alert.triggered"])
        return tenant, ep

    try:
        ok_proc, ok_url = start_receiver(0.0)
        flaky_proc, flaky_url = start_receiver(0.3)
        procs += [ok_proc, flaky_proc]
        base = baseline(ok_url, args.baseline_requests)
        worker = subprocess.Popen(
            [str(Path(sys.executable).parent / "celery"), "-A", "alertcenter", "worker", "-Q", "deliver",
             "--concurrency", str(args.concurrency), "--pool", "prefork",
             "--loglevel", os.environ.get("BENCH_WORKER_LOGLEVEL", "WARNING"),
             "--without-gossip", "--without-mingle", "--hostname", hostname],
            cwd=ROOT, start_new_session=True)
        procs.append(worker)
        threading.Thread(target=sweep_loop, daemon=True).start()

        tenant, warm = endpoint("bench-warm", ok_url + "/warm")
        fire(tenant, 20 * args.concurrency)
        wait_delivered(warm, 20 * args.concurrency, timeout=120)  # the worker is up, its processes warm

        # Drain: the outbox is written (and its doorbells queued) while the worker does not consume.
        consume(app, hostname, on=False)
        tenant, drain_ep = endpoint("bench-drain", ok_url + "/drain")
        a0 = time.perf_counter()
        fire(tenant, args.alerts)
        alert_side = time.perf_counter() - a0
        db_name = os.environ["DATABASE_URL"].rsplit("/", 1)[1]

        def cpu() -> tuple[float, float, float]:
            return (cpu_seconds(pgid=worker.pid), cpu_seconds(cmdline_has=f" {db_name} "),
                    cpu_seconds(pgid=ok_proc.pid))

        c0 = cpu()
        d0 = time.perf_counter()
        consume(app, hostname, on=True)
        drain = wait_delivered(drain_ep, args.alerts) - d0
        drain_cpu = [(b - a) * 1000 / args.alerts * 1000 for a, b in zip(c0, cpu())]
        load = os.getloadavg()[0]

        # End to end: alerts written while the worker sends.
        tenant, ep = endpoint("bench-e2e", ok_url)
        t0 = time.perf_counter()
        fire(tenant, args.alerts)
        t_fired = time.perf_counter()
        t_done = wait_delivered(ep, args.alerts)

        if args.flaky_alerts:
            flaky_tenant, fep = endpoint("bench-flaky", flaky_url)
            since = timezone.now()
            f0 = time.perf_counter()
            fire(flaky_tenant, args.flaky_alerts)
            f_done = wait_delivered(fep, args.flaky_alerts)
            stats = selectors.delivery_statistics(tenant_ids=[flaky_tenant.pk], since=since)
    finally:
        stop.set()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()

    n = args.alerts
    rows = [
        ("baseline: bare requests.post loop, same receiver", f"{base:,.0f} req/s"),
        (f"alert side: {n} alerts + outbox rows (tx of 100), no worker consuming",
         f"{alert_side:.2f} s ({n / alert_side:,.0f} alerts/s)"),
        (f"drain: {n} queued deliveries -> all DELIVERED",
         f"{drain:.2f} s -> {n / drain:,.0f} deliveries/s ({n / drain / base:.2f}x baseline)"),
        ("  CPU per 1,000 drained deliveries: worker / PostgreSQL / receiver",
         " / ".join(f"{ms:,.0f}" for ms in drain_cpu) + f" ms (load average {load:.1f})"),
        (f"end to end: {n} alerts written while the worker sends",
         f"{t_done - t0:.2f} s -> {n / (t_done - t0):,.0f} deliveries/s ({n / (t_done - t0) / base:.2f}x); "
         f"writing {t_fired - t0:.2f} s, last delivery +{t_done - t_fired:.2f} s"),
    ]
    if args.flaky_alerts:
        rows.append((f"flaky receiver (30% failures, retry 1 s): {args.flaky_alerts} alerts",
                     f"all DELIVERED in {f_done - f0:.2f} s; initial success {stats['initial_success_rate']:.1%}, "
                     f"cumulative {stats['cumulative_success_rate']:.1%}, retries {stats['retries']}, "
                     f"downgrades {stats['downgrades']}"))
    width = max(len(k) for k, _ in rows)
    print(f"cpus: {os.cpu_count()}, worker: prefork, concurrency {args.concurrency}, "
          f"DELIVERY_BATCH_SIZE {settings.DELIVERY_BATCH_SIZE}")
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
