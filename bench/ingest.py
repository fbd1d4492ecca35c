"""Ingest benchmark: POST /api/v1/logs -> IngestBatch -> detect worker -> EventRecord/Alert.

    .venv/bin/python bench/ingest.py [--seconds 20] [--latency-seconds 20] [--worker-concurrency N]

Creates its own PostgreSQL database (ac_bench_ingest) and uses Redis db 6, migrates, loads the
default rule pack, starts ONE gunicorn web process and ONE celery worker (queues detect,default;
--worker-concurrency processes, by default one per CPU: celery's own default, and how
bench/storm.py runs it), then from this process:
  1. posts pre-built NDJSON batches of 1,000 realistic events (mixed levels, 50 tenants x 20
     plugins, ~5% matching the rules) back to back for --seconds: accepted events/s; then waits
     for the worker to finish: detected events/s (events in the DONE batches of this phase / time
     from the first one's arrival to the last one's end);
  2. posts 5,000 events/s (one 1,000-event batch every 200 ms) for --latency-seconds, each batch
     carrying one FATAL line for a fresh plugin, and measures post -> Alert.created_at (p50/p99);
  3. times a bare loop over the same bodies: orjson parse + one Aho-Corasick keyword scan.
Prints a table. The figures depend on the machine (the target box has 2 cores).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

BASE = Path(__file__).resolve().parent.parent
PY = sys.executable
BIN = Path(PY).parent
DB = os.environ.get("BENCH_DB", "ac_bench_ingest")
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/6")
TENANTS, PLUGINS, BATCH = 50, 20, 1000


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.update(DATABASE_URL=f"{PG}/{DB}", REDIS_URL=REDIS, CELERY_BROKER_URL="", CACHE_URL="",
             SECRET_KEY="bench-only-secret", DEBUG="0", LOG_LEVEL="WARNING", LOG_FORMAT="text",
             INGEST_TENANT_EVENTS_PER_SECOND="10000000", DJANGO_SETTINGS_MODULE="alertcenter.settings",
             PYTHONUNBUFFERED="1")
    return e


def setup_database() -> None:
    import psycopg
    import redis

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    redis.Redis.from_url(REDIS).flushdb()
    subprocess.run([PY, "manage.py", "migrate", "-v", "0"], cwd=BASE, env=env(), check=True)


def django_setup():
    os.environ.update(env())
    sys.path.insert(0, str(BASE))
    import django

    django.setup()


def seed() -> tuple[str, dict[str, list[str]]]:
    from apps.rules.services import pack_import
    from apps.tenants.models import Tenant
    from apps.tenants.tokens import issue_token

    tenants = {f"t{i:02d}": [f"plugin-{j:02d}" for j in range(PLUGINS)] for i in range(TENANTS)}
    Tenant.objects.bulk_create([Tenant(slug=s, name=s) for s in tenants])
    pack_import(text=(BASE / "fixtures/log_rules/default.yaml").read_text(), actor="bench", source="pack:default")
    token = issue_token(name="bench", scopes="logs:write", tenant=None)[1]
    return token, tenants


def start(argv: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=BASE, env=env(), stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def build_bodies(tenants: dict[str, list[str]], n: int) -> list[bytes]:
    import orjson

    from apps.ingest.traffic import TrafficGenerator

    gen = TrafficGenerator(tenants, seed=42, match_ratio=0.05)
    return [b"\n".join(orjson.dumps(e) for e in gen.events(BATCH)) for _ in range(n)]


def post(session, url: str, token: str, body: bytes) -> dict:
    resp = session.post(url, data=body, timeout=60, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"})
    if resp.status_code != 202:
        raise RuntimeError(f"HTTP {resp.status_code}: {resp.text[:300]}")
    return resp.json()


def throughput(url: str, token: str, bodies: list[bytes], seconds: float, clients: int) -> tuple[int, float]:
    import requests

    accepted = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def run(k: int) -> None:
        s = requests.Session()
        i = k
        while time.monotonic() < deadline:
            n = post(s, url, token, bodies[i % len(bodies)])["accepted"]
            with lock:
                accepted[0] += n
            i += clients

    t0 = time.monotonic()
    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return accepted[0], time.monotonic() - t0


from proc_cpu import cpu_seconds  # noqa: E402  (bench/ is on sys.path when run as a script)


def wait_drained(timeout: float) -> None:
    from apps.ingest.models import BatchStatus, IngestBatch

    deadline = time.monotonic() + timeout
    while IngestBatch.objects.filter(status=BatchStatus.PENDING).exists():
        if time.monotonic() > deadline:
            raise RuntimeError("worker did not drain the backlog in time")
        time.sleep(0.5)


def detected_rate(since: datetime) -> tuple[int, float]:
    """Events in the DONE batches received since ``since`` (the throughput phase, not the warm-up
    batch before it) and the seconds from the first one's arrival to the last one's end."""
    from django.db.models import Max, Min, Sum

    from apps.ingest.models import BatchStatus, IngestBatch

    agg = IngestBatch.objects.filter(status=BatchStatus.DONE, received_at__gte=since).aggregate(
        n=Sum("event_count"), first=Min("received_at"), last=Max("processed_at"))
    return agg["n"] or 0, (agg["last"] - agg["first"]).total_seconds()


def latency(url: str, token: str, bodies: list[bytes], seconds: float, rate: int) -> list[float]:
    import orjson
    import requests

    from apps.alerts.models import Alert

    s = requests.Session()
    interval = BATCH / rate
    sent: dict[str, float] = {}
    t_next = time.monotonic()
    end = t_next + seconds
    k = 0
    while t_next < end:
        time.sleep(max(0.0, t_next - time.monotonic()))
        plugin = f"latency-{k:04d}"
        marker = orjson.dumps({"ts": datetime.now(timezone.utc).isoformat(), "level": "FATAL",
                               "message": "worker crashed: out of memory", "tenant_id": "t00", "plugin_id": plugin})
        body = bodies[k % len(bodies)].split(b"\n", 1)[1] + b"\n" + marker
        sent[plugin] = time.time()
        post(s, url, token, body)
        k += 1
        t_next += interval
    wait_drained(120)
    created = dict(Alert.objects.filter(rule_key="fatal-error", plugin__slug__startswith="latency-")
                   .values_list("plugin__slug", "created_at"))
    return sorted(created[p].timestamp() - t for p, t in sent.items() if p in created)


def baseline(bodies: list[bytes], seconds: float = 3.0) -> float:
    import ahocorasick
    import orjson
    import yaml

    doc = yaml.safe_load((BASE / "fixtures/log_rules/default.yaml").read_text())
    automaton = ahocorasick.Automaton()
    for rule in doc["rules"]:
        for kw in rule["match"].get("keywords") or []:
            automaton.add_word(kw.casefold(), rule["id"])
    automaton.make_automaton()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for body in bodies:
            for line in body.split(b"\n"):
                ev = orjson.loads(line)
                for _ in automaton.iter(ev["message"].casefold()):
                    pass
                n += 1
    return n / (time.perf_counter() - t0)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main() -> None:
    global DB
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--latency-seconds", type=float, default=20)
    parser.add_argument("--latency-rate", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=2, help="concurrent posting connections")
    parser.add_argument("--web-workers", type=int, default=1)
    parser.add_argument("--worker-concurrency", type=int, default=os.cpu_count() or 1,
                        help="detect worker processes (default: one per CPU, celery's default)")
    parser.add_argument("--keep", action="store_true", help="leave the database for inspection")
    parser.add_argument("--db", default=None, help=f"database name (default {DB}; env BENCH_DB)")
    args = parser.parse_args()
    if args.db:
        DB = args.db

    load0 = os.getloadavg()[0]
    print(f"setting up {DB} ...", flush=True)
    setup_database()
    django_setup()
    token, tenants = seed()
    bodies = build_bodies(tenants, 40)
    logs = BASE / "var" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    from tests.support.processes import free_port, wait_for  # noqa: E402 (needs Django set up)

    port = free_port()
    url = f"http://127.0.0.1:{port}/api/v1/logs"
    web = start([str(BIN / "gunicorn"), "alertcenter.wsgi", "--bind", f"127.0.0.1:{port}", "--workers",
                 str(args.web_workers), "--timeout", "120", "--log-level", "warning"], logs / "web.log")
    worker = start([str(BIN / "celery"), "-A", "alertcenter", "worker", "-Q", "detect,default", "--concurrency",
                    str(args.worker_concurrency), "--pool", "prefork", "--loglevel", "WARNING",
                    "--without-gossip", "--without-mingle", "--hostname", "bench@%h"], logs / "worker.log")
    try:
        import requests

        wait_for(lambda: requests.get(url.replace("/logs", "/health"), timeout=2).status_code in (200, 503),
                 timeout=60, what="gunicorn up")
        post(requests.Session(), url, token, bodies[0])  # warm-up: compiles rules, registers plugins
        wait_drained(120)
        print(f"throughput: posting for {args.seconds:.0f} s ...", flush=True)
        cpu0 = (cpu_seconds(pgid=web.pid), cpu_seconds(pgid=worker.pid), cpu_seconds(cmdline_has=f" {DB} "))
        since = datetime.now(timezone.utc)
        client0 = time.process_time()
        accepted, elapsed = throughput(url, token, bodies, args.seconds, args.clients)
        client_ms = (time.process_time() - client0) * 1e6 / accepted  # this process: the posting client
        t_drain = time.monotonic()
        wait_drained(600)
        drain = time.monotonic() - t_drain
        cpu1 = (cpu_seconds(pgid=web.pid), cpu_seconds(pgid=worker.pid), cpu_seconds(cmdline_has=f" {DB} "))
        cpu_ms = [(b - a) * 1e6 / accepted for a, b in zip(cpu0, cpu1)]  # ms per 1,000 events
        detected, detect_span = detected_rate(since)
        print(f"latency: {args.latency_rate} events/s for {args.latency_seconds:.0f} s ...", flush=True)
        lat = latency(url, token, bodies, args.latency_seconds, args.latency_rate)
    finally:
        stop(web)
        stop(worker)
    base = baseline(bodies)
    acc_rate = accepted / elapsed
    det_rate = detected / detect_span if detect_span > 0 else float("nan")
    rows = [
        ("events/s accepted (POST -> batch committed)", f"{acc_rate:,.0f}"),
        ("events/s detected (batches DONE)", f"{det_rate:,.0f}"),
        ("backlog drain after posting stopped", f"{drain:.1f} s"),
        ("CPU per 1,000 events: web / detect worker / PostgreSQL",
         f"{cpu_ms[0]:.1f} / {cpu_ms[1]:.1f} / {cpu_ms[2]:.1f} ms"),
        ("CPU per 1,000 events: the posting client (this script)", f"{client_ms:.1f} ms"),
        ("detect worker CPU-bound ceiling (1 core)", f"{1e6 / cpu_ms[1]:,.0f} ev/s" if cpu_ms[1] else "n/a"),
        (f"log-to-alert p50 at {args.latency_rate:,} ev/s ({len(lat)} alerts)", f"{pct(lat, 50) * 1000:,.0f} ms"),
        (f"log-to-alert p99 at {args.latency_rate:,} ev/s", f"{pct(lat, 99) * 1000:,.0f} ms"),
        ("baseline: orjson parse + one automaton, events/s", f"{base:,.0f}"),
        ("accepted / baseline", f"{acc_rate / base:.1%}"),
        ("detected / baseline", f"{det_rate / base:.1%}"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"\nIngest bench: {os.cpu_count()} CPUs, 1 web process x {args.web_workers} worker(s), 1 celery worker x "
          f"{args.worker_concurrency}, batches of {BATCH}, {TENANTS} tenants x {PLUGINS} plugins, {args.seconds:.0f} s; "
          f"load average {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end")
    print("-" * (width + 20))
    for name, value in rows:
        print(f"{name:<{width}}  {value:>16}")
    if not args.keep:
        from django.db import connections

        connections.close_all()


if __name__ == "__main__":
    main()
