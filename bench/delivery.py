"""Delivery throughput bench: real worker, real local receiver, the full outbox -> attempt path.

    .venv/bin/python bench/delivery.py [--alerts 3000] [--flaky-alerts 1000] [--concurrency 4]

Uses DATABASE_URL (default postgres://postgres@127.0.0.1:5432/ac_delivery_bench, created if missing
and migrated) and REDIS_URL (default redis://127.0.0.1:6379/5, flushed). Prints:

* baseline: a bare ``requests.post`` loop to the same receiver (one client, no database, no signing);
* deliveries/s: alerts written with their outbox rows in batches of 100 (as the detect worker
  would), until every webhook delivery is DELIVERED (signed, attempt row, alert state, timeline,
  audit), and its ratio to the baseline;
* under a receiver failing 30 % at random (retry schedule 1 s): initial and cumulative success.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ac_delivery_bench")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/5")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
os.environ.update(DEBUG="0", LOG_LEVEL="WARNING", LOG_FORMAT="text", CELERY_BROKER_URL="", CACHE_URL="",
                  WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8", DELIVERY_RETRY_SCHEDULE="1,1,1")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alertcenter.settings")

RECEIVER = """
import sys
sys.path.insert(0, {root!r})
from apps.delivery.simulator import Simulator, SimulatorConfig
sim = Simulator("127.0.0.1", {port}, SimulatorConfig(fail_rate={fail}, quiet=True, seed=1))
sim.server.request_queue_size = 1024
sim.server.serve_forever(0.2)
"""


def ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
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

    from apps.alerts.models import Alert
    from apps.alerts.signals import alert_event

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
                alert_event.send(sender=Alert, alert=alert, event_type="alert.triggered", data={})


def wait_delivered(endpoint, n: int, timeout: float = 600) -> float:
    from apps.delivery.models import Delivery

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = Delivery.objects.filter(endpoint=endpoint, state="DELIVERED").count()
        if done >= n:
            return time.perf_counter()
        time.sleep(0.05)
    raise SystemExit(f"timed out: {done}/{n} delivered")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alerts", type=int, default=3000)
    parser.add_argument("--flaky-alerts", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--baseline-requests", type=int, default=2000)
    args = parser.parse_args()

    ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    import redis
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from apps.delivery import dispatch, selectors
    from apps.delivery.services import create_endpoint
    from apps.tenants.models import Tenant

    call_command("migrate", verbosity=0)
    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    stamp = time.strftime("%H%M%S")
    procs: list[subprocess.Popen] = []
    stop = threading.Event()

    def sweep_loop() -> None:
        while not stop.wait(0.5):
            dispatch.sweep()
        connection.close()

    try:
        ok_proc, ok_url = start_receiver(0.0)
        flaky_proc, flaky_url = start_receiver(0.3)
        procs += [ok_proc, flaky_proc]
        base = baseline(ok_url, args.baseline_requests)
        worker = subprocess.Popen(
            [str(Path(sys.executable).parent / "celery"), "-A", "alertcenter", "worker", "-Q", "deliver",
             "--concurrency", str(args.concurrency), "--pool", "prefork", "--loglevel", os.environ.get("BENCH_WORKER_LOGLEVEL", "WARNING"),
             "--without-gossip", "--without-mingle", "--hostname", f"bench-{os.getpid()}@%h"],
            cwd=ROOT, start_new_session=True)
        procs.append(worker)
        threading.Thread(target=sweep_loop, daemon=True).start()

        tenant = Tenant.objects.create(slug=f"bench-{stamp}", name="bench")
        warm, _ = create_endpoint(tenant=tenant, url=ok_url + "/warm", event_types=["alert.triggered"])
        fire(tenant, 20)
        wait_delivered(warm, 20, timeout=120)  # the worker is up and its processes warm
        warm.delete()

        ep, _ = create_endpoint(tenant=tenant, url=ok_url, event_types=["alert.triggered"])
        t0 = time.perf_counter()
        fire(tenant, args.alerts)
        t_fired = time.perf_counter()
        t_done = wait_delivered(ep, args.alerts)
        rate = args.alerts / (t_done - t0)

        if args.flaky_alerts:
            flaky_tenant = Tenant.objects.create(slug=f"bench-flaky-{stamp}", name="bench flaky")
            fep, _ = create_endpoint(tenant=flaky_tenant, url=flaky_url, event_types=["alert.triggered"])
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

    print(f"cpus: {os.cpu_count()}, worker concurrency: {args.concurrency}")
    print(f"baseline (bare requests.post loop, same receiver): {base:,.0f} requests/s")
    print(f"deliveries: {args.alerts} alerts, outbox written in {t_fired - t0:.2f} s, all DELIVERED after "
          f"{t_done - t0:.2f} s -> {rate:,.0f} deliveries/s ({rate / base:.2f}x baseline)")
    print(f"  of which the alert side (alerts + outbox rows + PENDING state, timeline, audit) {t_fired - t0:.2f} s; "
          f"the last delivery {t_done - t_fired:.2f} s after the last commit")
    if not args.flaky_alerts:
        return
    print(f"flaky receiver (30% failures, retry 1 s): {args.flaky_alerts} alerts all delivered in "
          f"{f_done - f0:.2f} s; initial success {stats['initial_success_rate']:.1%}, cumulative "
          f"{stats['cumulative_success_rate']:.1%}, retries {stats['retries']}, downgrades {stats['downgrades']}")


if __name__ == "__main__":
    main()
