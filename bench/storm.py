"""Alert-storm bench: N FATAL lines for N distinct (tenant, plugin) pairs -> N signed webhooks.

    .venv/bin/python bench/storm.py [--n 2000] [--n 10000] [--blackhole [--hole-rounds 2]] [--sustained] [--no-alertmanager]

Database ``ac_storm`` (dropped, created and migrated at every run; BENCH_PG for the server) and
Redis db 15 (flushed). This machine's PostgreSQL runs with ``autovacuum = off`` (its CI
configuration); the bench runs ``VACUUM (ANALYZE)`` on its database every 20 s in its place, as
autovacuum would on a production server (its CPU counts in the PostgreSQL column; in the
``--blackhole`` bracket once in each pause between storms instead), and once after the warm-up:
a server that has been running has statistics of its tables. Without them (a table the planner
has never seen analysed) it guesses that a lookup of 100 keys on an indexed column
matches half the table, and the first storm's window, delivery and plugin lookups ran as scans of
their whole tables (pg_stat_user_tables: 1.3 M window rows, 0.5 M deliveries read at N = 10,000).

Starts gunicorn (2 workers), one Celery worker (queues detect, deliver, default; concurrency 2)
and a receiver process (threaded HTTP/1.1, records arrival times, checks the
``X-PowerX-Signature`` HMAC of every alert.triggered with its tenant's secret). Seeds 50 tenants,
one webhook each (alert.triggered) and the default rule pack, whose ``fatal-error`` rule opens one
alert per (tenant, plugin) on one FATAL line.

For each N it posts the N lines through ``POST /api/v1/logs`` in NDJSON batches of 100 (one
keep-alive client, back to back) and waits for every webhook: accepted/s, alerts created/s,
post -> alert (``Alert.created_at``) and post -> webhook p50/p99/max, CPU per 1,000 alerts of the
web processes, the worker and PostgreSQL (from /proc), and PostgreSQL's WAL bytes per alert (the
write volume, which unlike CPU time does not move with the machine's speed). In the same run:

* peer: the same N alerts through Debian's ``prometheus-alertmanager`` (free port, no cluster,
  ``group_by: [tenant, plugin]`` so each alert is its own notification as here, ``group_wait: 0s``,
  ``group_interval: 1s``), posted to ``/api/v2/alerts`` in batches of 100, to the same receiver;
* floor: N rows in one multi-row INSERT plus N ``requests.post`` through one keep-alive session to
  the same receiver.

``--blackhole``: the N storm again with one more tenant whose endpoint accepts connections and never
answers (every attempt waits out WEBHOOK_TIMEOUT_SECONDS); every 50th line is that tenant's, and
the rows show the other tenants' post -> webhook figures. ``--hole-rounds`` (2) such storms run
alternating with plain storms of the same N, plain first and last, each after the same pause
(WEBHOOK_TIMEOUT_SECONDS + 2 s: the hole's sends have timed out and the box is quiet, so no storm
inherits the previous one's leftovers), and the holes' mean p99 is shown
against the plain ones': a storm's p99 moves by tenths of a second from run to run on this machine,
so one plain run minutes earlier, on smaller tables, cannot tell a hole's cost from the box's.

``--sustained``: 1,000 new alerts/s (ten 100-line batches a second) for ``--seconds`` (60): the
notification backlog (posted minus received) every 5 s, whether it grows, and the CPU per 1,000
alerts of web / worker / PostgreSQL from the first post to the last webhook.

The storm guard and the plugin cap would (rightly) fold such a storm into a few alerts, so the
bench raises them: ALERTS_NEW_PER_BATCH_MAX=100000, ALERTS_NEW_PER_MINUTE_MAX=100000000,
TENANT_MAX_PLUGINS=1000000 (and INGEST_TENANT_EVENTS_PER_SECOND).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
DB = "ac_storm"
REDIS = "redis://127.0.0.1:6379/15"
TENANTS, BATCH = 50, 100
HOLE = "hole"  # --blackhole's tenant
AM_BINARY = "/usr/bin/prometheus-alertmanager"
AUTOVACUUM_SECONDS = 20

RECEIVER = r'''
import hashlib, hmac, json, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

secrets = json.load(open(sys.argv[2]))
out = open(sys.argv[3], "a", buffering=1)
lock = threading.Lock()
counts = {"storm": 0, "am": 0, "base": 0, "bad": 0}

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle on, the second waits for the client's
    # delayed ACK (40 ms a request on a keep-alive connection).
    disable_nagle_algorithm = True
    def log_message(self, *a): pass
    def _reply(self, body=b"ok"):
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        self._reply(json.dumps(counts).encode())
    def do_POST(self):
        now = time.time()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        kind = self.path.split("/")[1]
        lines = []
        if kind == "storm":
            doc = json.loads(body)
            tenant = self.path.split("/")[2]
            mac = "sha256=" + hmac.new(secrets[tenant].encode(), body, hashlib.sha256).hexdigest()
            if mac not in (self.headers.get("X-PowerX-Signature") or "").split(","):
                kind = "bad"
            elif doc["type"] == "alert.triggered":
                lines.append(f"storm {now} {doc['data']['tenant']} {doc['data']['plugin']}\n")
        elif kind == "am":
            for a in json.loads(body)["alerts"]:
                lines.append(f"am {now} {a['labels']['tenant']} {a['labels']['plugin']}\n")
        else:
            lines.append(f"base {now} - -\n")
        with lock:
            counts[kind] += max(1, len(lines)) if kind != "bad" else 1
            out.write("".join(lines))
        self._reply()

class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # listen() backlog: a burst of new connections must not be reset

Server(("127.0.0.1", int(sys.argv[1])), H).serve_forever(0.2)
'''


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.update(DATABASE_URL=f"{PG}/{DB}", REDIS_URL=REDIS, CELERY_BROKER_URL="", CACHE_URL="",
             SECRET_KEY="bench-only-secret", DEBUG="0", LOG_LEVEL="WARNING", LOG_FORMAT="text",
             WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8", INGEST_TENANT_EVENTS_PER_SECOND="10000000",
             ALERTS_NEW_PER_BATCH_MAX="100000", ALERTS_NEW_PER_MINUTE_MAX="100000000",
             TENANT_MAX_PLUGINS="1000000", DJANGO_SETTINGS_MODULE="alertcenter.settings", PYTHONUNBUFFERED="1")
    return e


def start(argv: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=ROOT, env=env(), stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what: str, predicate, timeout: float, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception:  # the peer may not be up yet
            pass
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def setup() -> None:
    """Fresh database and Redis db, migrated; Django set up in this process."""
    import psycopg
    import redis

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB}"')
    redis.Redis.from_url(REDIS).flushdb()
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env(), check=True)
    os.environ.update(env())
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


class Autovacuum:
    """What autovacuum does on a production server, which this machine's PostgreSQL does not do
    (its CI configuration sets ``autovacuum = off``): ``VACUUM (ANALYZE)`` of the bench database
    every ``AUTOVACUUM_SECONDS``. Without it the tables a storm writes are never analysed (the
    planner keeps the estimates of empty tables) and their dead rows are never cleared. Its backend
    is one of the database's, so its CPU is in the PostgreSQL column."""

    def __init__(self) -> None:
        self.runs = 0
        self.passes: list[tuple[float, float]] = []  # (time.monotonic() at start, seconds)
        self.start()

    def start(self) -> None:
        import threading

        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        import psycopg

        with psycopg.connect(f"{PG}/{DB}", autocommit=True) as conn:
            while not self._stop.wait(AUTOVACUUM_SECONDS):
                began = time.monotonic()
                conn.execute("VACUUM (ANALYZE)")
                self.passes.append((began, time.monotonic() - began))
                self.runs += 1

    @staticmethod
    def once() -> None:
        """One pass now, on a connection of its own (the loop's may be mid-pass)."""
        import psycopg

        with psycopg.connect(f"{PG}/{DB}", autocommit=True) as conn:
            conn.execute("VACUUM (ANALYZE)")

    def stop(self) -> None:
        """Stop the periodic passes (waits for one under way); ``start`` resumes them."""
        self._stop.set()
        self._thread.join()


def seed(receiver: str) -> tuple[str, dict[str, str]]:
    from apps.delivery.services import create_endpoint
    from apps.rules.services import pack_import
    from apps.tenants.models import Tenant
    from apps.tenants.tokens import issue_token

    secrets = {}
    for i in range(TENANTS):
        tenant = Tenant.objects.create(slug=f"t{i:02d}", name=f"t{i:02d}")
        _, secrets[tenant.slug] = create_endpoint(tenant=tenant, url=f"{receiver}/storm/{tenant.slug}",
                                                  event_types=["alert.triggered"])
    pack_import(text=(ROOT / "fixtures/log_rules/default.yaml").read_text(), actor="bench", source="pack:default")
    token = issue_token(name="bench", scopes="logs:write", tenant=None)[1]
    return token, secrets


def black_hole() -> str:
    """A listener that accepts connections and never answers (kept open, never read); its URL."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    held = []

    def accept() -> None:
        while True:
            held.append(listener.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}/hole"


def seed_hole(url: str) -> None:
    from apps.delivery.services import create_endpoint
    from apps.tenants.models import Tenant

    create_endpoint(tenant=Tenant.objects.create(slug=HOLE, name=HOLE), url=url, event_types=["alert.triggered"])


def settle() -> None:
    """The pause before each storm of the black-hole bracket: a hole send's timeout and 2 s, with
    the bench's vacuum pass in it. The periodic pass is stopped over the bracket: one landing
    inside a storm (every 20 s, whichever storm is running) cost that storm up to a second of
    PostgreSQL CPU and moved its p99 more than a hole does; now every storm of the bracket starts
    just vacuumed and none is hit by a pass."""
    from django.conf import settings

    began = time.monotonic()
    Autovacuum.once()
    time.sleep(max(0.0, settings.WEBHOOK_TIMEOUT_SECONDS + 2 - (time.monotonic() - began)))


def hole_sends_ended() -> None:
    """Wait until no send to the black hole is in flight (each ends at WEBHOOK_TIMEOUT_SECONDS and is
    recorded as a failure), so the plain storm after the hole's runs on a worker as quiet as the one
    before it did."""
    from apps.delivery.models import Delivery, DeliveryState

    wait_until("the black hole's sends timed out", lambda: not Delivery.objects.filter(
        tenant__slug=HOLE, state=DeliveryState.SENDING).exists(), timeout=120, interval=0.5)


def pairs(n: int, prefix: str) -> list[tuple[str, str]]:
    return [(f"t{i % TENANTS:02d}", f"{prefix}-{i:06d}") for i in range(n)]


def body_for(chunk: list[tuple[str, str]]) -> bytes:
    import orjson

    ts = datetime.now(timezone.utc).isoformat()
    return b"\n".join(orjson.dumps({"ts": ts, "level": "FATAL", "message": "worker crashed: out of memory",
                                    "tenant_id": t, "plugin_id": p}) for t, p in chunk)


def post_logs(session, url: str, token: str, chunk: list[tuple[str, str]], sent: dict) -> None:
    body = body_for(chunk)
    t = time.time()
    resp = session.post(url, data=body, timeout=60, headers={"Authorization": f"Bearer {token}",
                                                             "Content-Type": "application/x-ndjson"})
    if resp.status_code != 202 or resp.json()["accepted"] != len(chunk):
        raise SystemExit(f"POST /api/v1/logs: HTTP {resp.status_code}: {resp.text[:300]}")
    for pair in chunk:
        sent[pair] = t


def arrivals(path: Path, kind: str) -> dict[tuple[str, str], float]:
    got: dict[tuple[str, str], float] = {}
    with open(path) as f:
        for line in f:
            k, t, tenant, plugin = line.split()
            if k == kind:
                got.setdefault((tenant, plugin), float(t))
    return got


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def dist(values: list[float]) -> str:
    return f"{pct(values, 50):.2f} / {pct(values, 99):.2f} / {max(values, default=float('nan')):.2f} s"


def cpu_cell(cpu: dict[str, float]) -> str:
    return " / ".join(f"{cpu[k]:,.0f}" for k in ("web", "worker", "pg")) + " ms"


def received(receiver: str, kind: str) -> int:
    import requests

    return requests.get(receiver, timeout=5).json()[kind]


class BackendCpu:
    """CPU of the bench database's PostgreSQL backends over an interval, polled every 0.2 s: a
    backend that exits (a connection closed) keeps what it had used at the last poll, instead of
    vanishing from a before/after sum (which then goes negative)."""

    def __init__(self) -> None:
        import threading

        self._start = self._read()
        self._last = dict(self._start)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    @staticmethod
    def _read() -> dict[int, float]:
        from proc_cpu import cpu_by_pid

        return cpu_by_pid(cmdline_has=f" {DB} ")

    def _poll(self) -> None:
        while not self._stop.wait(0.2):
            self._last.update(self._read())

    def seconds(self) -> float:
        self._stop.set()
        self._thread.join()
        self._last.update(self._read())
        return sum(cpu - self._start.get(pid, 0.0) for pid, cpu in self._last.items())


def wal_position() -> str:
    """The server's current WAL position: the bytes written between two of them are the write
    volume of everything in between (the bench's database is the only busy one), a figure that
    does not move with the machine's speed as CPU time does."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn()::text")
        return cursor.fetchone()[0]


def wal_bytes_since(position: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", [position])
        return int(cursor.fetchone()[0])


def storm(n: int, url: str, token: str, receiver: str, log: Path, procs: dict, hole: bool = False,
          prefix: str = "s") -> dict:
    """Post N FATAL lines for N new pairs (plugins named ``{prefix}{n}-..``); wait for N webhooks;
    return the figures. ``hole``: every 50th line is the black-holed tenant's; the figures are the
    other tenants'."""
    import requests
    from proc_cpu import cpu_seconds

    from apps.alerts.models import Alert

    prefix = f"{prefix}{n}"
    chosen = pairs(n, prefix)
    if hole:
        chosen = [(HOLE, p) if i % 50 == 49 else (t, p) for i, (t, p) in enumerate(chosen)]
    measured = [pair for pair in chosen if pair[0] != HOLE]
    already = received(receiver, "storm")
    cpu0 = {k: cpu_seconds(pgid=p.pid) for k, p in procs.items()}
    pg = BackendCpu()
    wal0 = wal_position()
    session, sent = requests.Session(), {}
    t0 = time.time()
    for i in range(0, n, BATCH):
        post_logs(session, url, token, chosen[i:i + BATCH], sent)
    t_posted = time.time()
    wait_until(f"{len(measured)} webhooks (storm)", lambda: received(receiver, "storm") - already >= len(measured),
               timeout=1800, interval=0.2)
    cpu = {k: (cpu_seconds(pgid=p.pid) - cpu0[k]) * 1e6 / n for k, p in procs.items()}
    cpu["pg"] = pg.seconds() * 1e6 / n
    wal = wal_bytes_since(wal0) / n
    got = arrivals(log, "storm")
    created = {(t, p): at.timestamp() for t, p, at in Alert.objects.filter(
        plugin__slug__startswith=f"{prefix}-", rule_key="fatal-error").values_list("tenant__slug", "plugin__slug", "created_at")}
    missing = [pair for pair in measured if pair not in got or pair not in created]
    if missing:
        raise SystemExit(f"{len(missing)} pairs without an alert or a webhook, e.g. {missing[:3]}")
    return {
        "accepted": n / (t_posted - t0),
        "created": n / (max(created.values()) - t0),
        "post_alert": [created[p] - sent[p] for p in measured],
        "post_hook": [got[p] - sent[p] for p in measured],
        "done": max(got[p] for p in measured) - t0,
        "cpu": cpu,
        "wal": wal,
    }


def alertmanager_peer(n: int, receiver: str, log: Path, workdir: Path) -> dict:
    """The same N alerts through prometheus-alertmanager to the same receiver."""
    import requests
    import yaml
    from proc_cpu import cpu_seconds

    config = workdir / "alertmanager.yml"
    config.write_text(yaml.safe_dump({
        "route": {"receiver": "bench", "group_by": ["tenant", "plugin"], "group_wait": "0s",
                  "group_interval": "1s", "repeat_interval": "24h"},
        "receivers": [{"name": "bench", "webhook_configs": [{"url": f"{receiver}/am", "send_resolved": False}]}]}))
    port = free_port()
    am = subprocess.Popen([AM_BINARY, f"--config.file={config}", f"--storage.path={workdir / f'am-{n}'}",
                           f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
                           "--log.level=warn"], stdout=open(workdir / "alertmanager.log", "ab"),
                          stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until("alertmanager ready", lambda: requests.get(f"{base}/-/ready", timeout=2).status_code == 200, 30)
        chosen = pairs(n, f"a{n}")
        already = received(receiver, "am")
        cpu0 = cpu_seconds(pgid=am.pid)
        session, sent = requests.Session(), {}
        t0 = time.time()
        for i in range(0, n, BATCH):
            chunk = chosen[i:i + BATCH]
            payload = [{"labels": {"alertname": "FatalError", "tenant": t, "plugin": p, "severity": "emergency"},
                        "annotations": {"summary": "worker crashed: out of memory"}} for t, p in chunk]
            t = time.time()
            resp = session.post(f"{base}/api/v2/alerts", json=payload, timeout=60)
            if resp.status_code != 200:
                raise SystemExit(f"alertmanager: HTTP {resp.status_code}: {resp.text[:300]}")
            for pair in chunk:
                sent[pair] = t
        t_posted = time.time()
        wait_until(f"{n} webhooks (alertmanager)", lambda: received(receiver, "am") - already >= n, timeout=1800,
                   interval=0.2)
        cpu = (cpu_seconds(pgid=am.pid) - cpu0) * 1e6 / n
    finally:
        stop(am)
    got = arrivals(log, "am")
    return {"accepted": n / (t_posted - t0), "post_hook": [got[p] - sent[p] for p in chosen],
            "done": max(got[p] for p in chosen) - t0, "cpu": cpu}


def floor(n: int, receiver: str) -> dict:
    """One multi-row INSERT of N rows, then N requests.post through one keep-alive session."""
    import requests
    from django.db import connection

    t0 = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS storm_floor (id bigserial, tenant text, plugin text, "
                    "created_at timestamptz DEFAULT now())")
        chosen = pairs(n, f"f{n}")
        cur.execute("INSERT INTO storm_floor (tenant, plugin) SELECT * FROM unnest(%s::text[], %s::text[])",
                    [[t for t, _ in chosen], [p for _, p in chosen]])
    t_insert = time.perf_counter() - t0
    session = requests.Session()
    t1 = time.perf_counter()
    for i in range(n):
        session.post(f"{receiver}/base", data=b'{"type":"alert.triggered"}', timeout=10)
    t_posts = time.perf_counter() - t1
    return {"insert": t_insert, "posts": t_posts, "total": t_insert + t_posts}


def sustained(url: str, token: str, receiver: str, seconds: float, rate: int, procs: dict,
              vacuum: Autovacuum) -> tuple[list[tuple[float, int, int]], dict[str, float], list[tuple[float, float]]]:
    """Post ``rate`` new alerts/s for ``seconds``; return (t, posted, received) every 5 s and after,
    the CPU per 1,000 alerts of web / worker / PostgreSQL from the first post to the last webhook,
    and the vacuum passes in that time (start, seconds): a pass takes seconds of one core at these
    table sizes, which shows in the backlog."""
    import requests
    from proc_cpu import cpu_seconds

    cpu0 = {k: cpu_seconds(pgid=p.pid) for k, p in procs.items()}
    pg = BackendCpu()
    per_tick = BATCH
    interval = per_tick / rate
    chosen = pairs(int(seconds * rate), "u")
    already = received(receiver, "storm")
    session, sent = requests.Session(), {}
    samples = []
    t0 = time.monotonic()
    next_tick, next_sample, k = t0, t0 + 5, 0
    while k < len(chosen):
        time.sleep(max(0.0, next_tick - time.monotonic()))
        post_logs(session, url, token, chosen[k:k + per_tick], sent)
        k += per_tick
        next_tick += interval
        if time.monotonic() >= next_sample:
            samples.append((time.monotonic() - t0, k, received(receiver, "storm") - already))
            next_sample += 5
    t_end = time.monotonic()
    while True:
        got = received(receiver, "storm") - already
        samples.append((time.monotonic() - t0, k, got))
        if got >= len(chosen) or time.monotonic() - t_end > 600:
            break
        time.sleep(5)
    cpu = {k: (cpu_seconds(pgid=p.pid) - cpu0[k]) * 1e6 / len(chosen) for k, p in procs.items()}
    cpu["pg"] = pg.seconds() * 1e6 / len(chosen)
    return samples, cpu, [(began - t0, took) for began, took in vacuum.passes if began >= t0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, action="append", help="storm size (repeatable; default 2000)")
    parser.add_argument("--sustained", action="store_true", help="also 1,000 new alerts/s for --seconds")
    parser.add_argument("--blackhole", action="store_true",
                        help="also each N storm with one more tenant whose endpoint never answers")
    parser.add_argument("--hole-rounds", type=int, default=2,
                        help="--blackhole: black-hole storms per N, each between two plain ones (default 2)")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--no-alertmanager", action="store_true")
    args = parser.parse_args()
    sizes = args.n or [2000]
    if not args.no_alertmanager and not os.path.exists(AM_BINARY):
        raise SystemExit(f"{AM_BINARY} is missing: apt-get install prometheus-alertmanager (or --no-alertmanager)")

    logs = ROOT / "var" / "bench" / "storm"
    logs.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="storm-"))
    load0 = os.getloadavg()[0]
    print(f"setting up {DB} ...", flush=True)
    setup()
    rport = free_port()
    receiver = f"http://127.0.0.1:{rport}"
    token, secrets = seed(receiver)
    (workdir / "secrets.json").write_text(json.dumps(secrets))
    arrivals_log = workdir / "arrivals.log"
    procs: dict[str, subprocess.Popen] = {}
    rec = start([sys.executable, "-c", RECEIVER, str(rport), str(workdir / "secrets.json"), str(arrivals_log)],
                logs / "receiver.log")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api/v1/logs"
    procs["web"] = start([str(BIN / "gunicorn"), "alertcenter.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2",
                          "--timeout", "120", "--log-level", "warning"], logs / "web.log")
    procs["worker"] = start([str(BIN / "celery"), "-A", "alertcenter", "worker", "-Q", "detect,deliver,default",
                             "--concurrency", "2", "--pool", "prefork", "--loglevel", "WARNING", "--without-gossip",
                             "--without-mingle", "--hostname", f"storm-{os.getpid()}@%h"], logs / "worker.log")
    results = {}
    vacuum = Autovacuum()
    try:
        import requests

        wait_until("receiver up", lambda: received(receiver, "storm") == 0, 30)
        wait_until("gunicorn up", lambda: requests.get(url.replace("/logs", "/health"), timeout=2).status_code
                   in (200, 503), 60)
        print("warm-up ...", flush=True)
        # Warm-up: both web workers and both worker processes load code and compile the rules.
        # Two posting threads, so that requests overlap and both web workers serve some (posted one
        # after the other, all could land on one; the other then paid its first requests in the
        # first storm: up to twice the web CPU per alert at N = 2,000).
        warm_sent: dict = {}
        warm_failed: list[BaseException] = []

        def warm(first: int) -> None:
            s = requests.Session()
            try:
                for i in range(first, 8, 2):
                    post_logs(s, url, token, pairs(100, f"w{i}"), warm_sent)
            except BaseException as exc:  # post_logs raises SystemExit, which a thread would swallow
                warm_failed.append(exc)

        threads = [threading.Thread(target=warm, args=(k,)) for k in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if warm_failed:
            raise warm_failed[0]
        wait_until("warm-up webhooks", lambda: received(receiver, "storm") >= 800, 600, 0.2)
        vacuum.once()  # the statistics a running server has (module docstring)
        for n in sizes:
            print(f"storm: N={n:,} ...", flush=True)
            results[n] = {"ours": storm(n, url, token, receiver, arrivals_log, procs)}
            print(f"floor: N={n:,} ...", flush=True)
            results[n]["floor"] = floor(n, receiver)
            if not args.no_alertmanager:
                print(f"alertmanager: N={n:,} ...", flush=True)
                results[n]["am"] = alertmanager_peer(n, receiver, arrivals_log, workdir)
        if args.blackhole:
            seed_hole(black_hole())
            vacuum.stop()  # its passes run in the bracket's pauses instead (settle)
            for n in sizes:
                # Bracketed by two plain storms of the same N, back to back: the hole's figure is
                # judged against the spread of plain runs around it, not against one run minutes
                # earlier on smaller tables (a run's p99 moves by tenths of a second with the box).
                print(f"storms with a black-holed endpoint, each between two plain ones: N={n:,} "
                      f"x {args.hole_rounds} ...", flush=True)
                # Every storm of the bracket starts from a quiet box: the same pause before each
                # (longer than a hole send's timeout), so none inherits the one before it's
                # leftovers (dirty pages, a checkpoint, the hole's sends still timing out).
                settle()
                plain = [storm(n, url, token, receiver, arrivals_log, procs, prefix="p0-")]
                holes = []
                for k in range(1, args.hole_rounds + 1):
                    settle()
                    holes.append(storm(n, url, token, receiver, arrivals_log, procs, hole=True, prefix=f"h{k}-"))
                    settle()
                    hole_sends_ended()
                    plain.append(storm(n, url, token, receiver, arrivals_log, procs, prefix=f"p{k}-"))
                results[n]["hole"], results[n]["plain"] = holes, plain
            vacuum.start()
        if args.sustained:
            print(f"sustained: {args.rate:,} new alerts/s for {args.seconds:.0f} s ...", flush=True)
            results["sustained"] = sustained(url, token, receiver, args.seconds, args.rate, procs, vacuum)
        bad = received(receiver, "bad")
    finally:
        vacuum.stop()
        for p in procs.values():
            stop(p)
        stop(rec)
    report(results, sizes, bad, load0, args)


def report(results: dict, sizes: list[int], bad: int, load0: float, args) -> None:
    print(f"\nStorm bench: {os.cpu_count()} CPUs, gunicorn 2 workers, celery worker concurrency 2 (detect, deliver, "
          f"default), {TENANTS} tenants x 1 webhook, batches of {BATCH}; load average {load0:.1f} at start, "
          f"{os.getloadavg()[0]:.1f} at end; bad signatures at the receiver: {bad}")
    for n in sizes:
        r = results[n]
        ours, fl, am = r["ours"], r["floor"], r.get("am")
        rows = [
            ("", "Alert Center", "Alertmanager 0.25", "floor"),
            ("accepted/s (POST -> 2xx)", f"{ours['accepted']:,.0f}", f"{am['accepted']:,.0f}" if am else "-",
             f"INSERT {fl['insert'] * 1000:.0f} ms"),
            ("alerts created/s", f"{ours['created']:,.0f}", "-", f"{n / fl['insert']:,.0f}"),
            ("post -> alert p50 / p99 / max", dist(ours["post_alert"]), "-", "-"),
            ("post -> webhook p50 / p99 / max", dist(ours["post_hook"]), dist(am["post_hook"]) if am else "-", "-"),
            ("all webhooks received after", f"{ours['done']:.1f} s ({n / ours['done']:,.0f}/s)",
             f"{am['done']:.1f} s ({n / am['done']:,.0f}/s)" if am else "-",
             f"{fl['total']:.1f} s ({n / fl['total']:,.0f}/s)"),
            ("CPU per 1,000 alerts: web / worker / PostgreSQL",
             cpu_cell(ours["cpu"]),
             f"{am['cpu']:,.0f} ms" if am else "-", "-"),
            ("PostgreSQL WAL written per alert", f"{ours['wal'] / 1024:,.1f} KiB", "-", "-"),
        ]
        if "hole" in r:
            holes, plain = r["hole"], r["plain"]
            p99 = lambda runs: [pct(x["post_hook"], 99) for x in runs]  # noqa: E731
            rows.append(("black hole: plain storms' post -> webhook p99, in run order",
                         " / ".join(f"{v:.2f}" for v in p99(plain)) + " s", "-", "-"))
            rows.append(("black hole: 1 endpoint black-holed (2 %), each between two plain ones: "
                         "the others' post -> webhook p99",
                         " / ".join(f"{v:.2f}" for v in p99(holes)) + " s", "-", "-"))
            mean_hole, mean_plain = sum(p99(holes)) / len(holes), sum(p99(plain)) / len(plain)
            rows.append(("black hole: its mean p99 against the plain ones' (their range)",
                         f"{mean_hole - mean_plain:+.2f} s ({min(p99(plain)):.2f}-{max(p99(plain)):.2f} s)", "-", "-"))
            rows.append(("black hole: the others' post -> alert / post -> webhook, last hole run",
                         f"{dist(holes[-1]['post_alert'])}; {dist(holes[-1]['post_hook'])}", "-", "-"))
            rows.append(("black hole: CPU per 1,000 alerts, last hole run (the plain one before it)",
                         f"{cpu_cell(holes[-1]['cpu'])} ({cpu_cell(plain[-2]['cpu'])})", "-", "-"))
        print(f"\nN = {n:,}")
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        for row in rows:
            print("  ".join(f"{c:<{w}}" for c, w in zip(row, widths)))
    if "sustained" in results:
        samples, cpu, passes = results["sustained"]
        print(f"\nsustained {args.rate:,} new alerts/s for {args.seconds:.0f} s: t / posted / webhooks received / backlog")
        for t, posted, got in samples:
            print(f"  {t:6.1f} s  {posted:7,}  {got:7,}  {posted - got:7,}")
        during = [posted - got for t, posted, got in samples if t <= args.seconds + 1]
        grows = len(during) >= 2 and during[-1] > during[0] + args.rate  # more than a second's worth
        print(f"  backlog {'GROWS' if grows else 'does not grow'} during the run "
              f"({during[0] if during else 0:,} -> {during[-1] if during else 0:,})")
        print(f"  CPU per 1,000 alerts: web / worker / PostgreSQL {cpu_cell(cpu)}")
        print("  vacuum passes (start, took): "
              + (", ".join(f"{began:.1f} s +{took:.1f} s" for began, took in passes) or "none"))


if __name__ == "__main__":
    main()
