"""Live stream fan-out: 100 SSE clients on one stream process (uvicorn), against bare Redis pub/sub.

    .venv/bin/python bench/stream.py [--clients 100] [--rate 100] [--seconds 5] [--burst 2000]

Creates its own PostgreSQL database (ac_bench_stream, dropped and recreated), uses Redis db 15 and a
private channel, starts ONE ``uvicorn alertcenter.asgi:application`` and connects --clients SSE
clients (asyncio sockets, platform token) from this process, then:
  1. paced: --rate events/s for --seconds through ``apps.stream.services.append`` (each its own
     committed transaction, as an alert change is): created -> received p50/p99 over every
     (event, client) pair;
  2. burst: --burst events as fast as they commit (append_many of 10): events/s fanned out (the
     last client got the last event) and deliveries/s (events x clients);
  3. baseline: the same paced and burst runs as bare Redis PUBLISH to --clients redis.asyncio
     subscribers (no database, no HTTP): the floor the stream cannot beat.
Prints a table. Figures depend on the machine (the target box has 2 cores, shared).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

BASE = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DB = "ac_bench_stream"
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
CHANNEL = f"alertcenter:events:bench:{uuid.uuid4().hex[:8]}"
PORT = 18402


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.update(DATABASE_URL=f"{PG}/{DB}", REDIS_URL=REDIS, CELERY_BROKER_URL="", CACHE_URL="", DEBUG="0",
             SECRET_KEY="bench-only-secret", LOG_LEVEL="WARNING", LOG_FORMAT="text", STREAM_REDIS_CHANNEL=CHANNEL,
             DJANGO_SETTINGS_MODULE="alertcenter.settings", PYTHONUNBUFFERED="1", ALLOWED_HOSTS="127.0.0.1")
    return e


def setup() -> str:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=BASE, env=env(), check=True)
    os.environ.update(env())
    sys.path.insert(0, str(BASE))
    import django

    django.setup()
    from apps.tenants.models import Tenant
    from apps.tenants.tokens import issue_token

    Tenant.objects.create(slug="bench", name="Bench")
    return issue_token(name="bench", scopes="alerts:read", tenant=None)[1]


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] if values else float("nan")


class Receivers:
    """Arrival times per event key, over all clients."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.count = 0
        self.last_at = 0.0

    def got(self, sent: float) -> None:
        now = time.time()
        self.latencies.append(now - sent)
        self.count += 1
        self.last_at = now


async def sse_client(token: str, rx: Receivers, ready: asyncio.Event, opened: list) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
    writer.write((f"GET /api/v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                  "Accept: text/event-stream\r\n\r\n").encode())
    await writer.drain()
    while True:
        line = await reader.readline()
        if not line:
            return
        if line.startswith(b": connected"):
            opened.append(1)
            ready.set()
        elif line.startswith(b"data: "):
            rx.got(json.loads(line[6:])["sent"])


async def redis_client(rx: Receivers, opened: list) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS)
    async with client.pubsub() as ps:
        await ps.subscribe(CHANNEL + ":bare")
        opened.append(1)
        async for m in ps.listen():
            if m["type"] == "message":
                rx.got(json.loads(m["data"])["sent"])


def produce_stream(rate: int, seconds: float, burst: int, phase: list) -> None:
    from django.db import transaction

    from apps.stream import services
    from apps.tenants.models import Tenant

    tenant_id = Tenant.objects.get(slug="bench").pk
    t0 = time.monotonic()
    for i in range(int(rate * seconds)):
        time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
        services.append(tenant_id, "alert.updated", i, {"sent": time.time()})
    phase.append(("paced", time.time()))
    time.sleep(1.0)
    phase.append(("burst", time.time()))
    for i in range(0, burst, 10):
        with transaction.atomic():
            services.append_many([(tenant_id, "alert.updated", i + j, {"sent": time.time()}) for j in range(10)])


def produce_redis(rate: int, seconds: float, burst: int, phase: list) -> None:
    import redis

    client = redis.Redis.from_url(REDIS)
    t0 = time.monotonic()
    for i in range(int(rate * seconds)):
        time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
        client.publish(CHANNEL + ":bare", json.dumps({"sent": time.time(), "i": i}))
    phase.append(("paced", time.time()))
    time.sleep(1.0)
    phase.append(("burst", time.time()))
    for i in range(burst):
        client.publish(CHANNEL + ":bare", json.dumps({"sent": time.time(), "i": i}))


async def run(kind: str, args, token: str) -> dict:
    rx, opened, ready = Receivers(), [], asyncio.Event()
    if kind == "stream":
        tasks = [asyncio.create_task(sse_client(token, rx, ready, opened)) for _ in range(args.clients)]
    else:
        tasks = [asyncio.create_task(redis_client(rx, opened)) for _ in range(args.clients)]
    while len(opened) < args.clients:
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    phase: list = []
    producer = threading.Thread(target=produce_stream if kind == "stream" else produce_redis,
                                args=(args.rate, args.seconds, args.burst, phase), daemon=True)
    producer.start()
    paced_n = int(args.rate * args.seconds) * args.clients
    while len(phase) < 1 or rx.count < paced_n:
        await asyncio.sleep(0.05)
    paced = list(rx.latencies)
    rx.latencies, rx.count = [], 0
    while len(phase) < 2:
        await asyncio.sleep(0.05)
    burst_start = phase[1][1]
    deadline = time.time() + 120
    while rx.count < args.burst * args.clients and time.time() < deadline:
        await asyncio.sleep(0.02)
    elapsed = rx.last_at - burst_start
    for t in tasks:
        t.cancel()
    return {"p50": pct(paced, 50) * 1000, "p99": pct(paced, 99) * 1000, "got": rx.count,
            "events_per_s": args.burst / elapsed, "deliveries_per_s": rx.count / elapsed,
            "burst_p99": pct(rx.latencies, 99) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rate", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--burst", type=int, default=2000)
    args = parser.parse_args()
    token = setup()
    log = open(BASE / "var" / "bench-stream-uvicorn.log", "wb")
    server = subprocess.Popen([str(BIN / "uvicorn"), "alertcenter.asgi:application", "--host", "127.0.0.1", "--port",
                               str(PORT), "--no-access-log"], cwd=BASE, env=env(), stdout=log,
                              stderr=subprocess.STDOUT)
    try:
        import requests

        for _ in range(100):
            try:
                if requests.get(f"http://127.0.0.1:{PORT}/-/live", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        stream = asyncio.run(run("stream", args, token))
        bare = asyncio.run(run("redis", args, token))
    finally:
        server.terminate()
        server.wait(10)
    rows = [("paced: created -> received p50 (ms)", "p50", "{:.1f}"),
            ("paced: created -> received p99 (ms)", "p99", "{:.1f}"),
            ("burst: events/s fanned out to all clients", "events_per_s", "{:,.0f}"),
            ("burst: deliveries/s (events x clients)", "deliveries_per_s", "{:,.0f}"),
            ("burst: created -> received p99 (ms)", "burst_p99", "{:.0f}"),
            ("burst: deliveries received / expected", "got", "{:,}")]
    print(f"\n{args.clients} clients, paced {args.rate} events/s for {args.seconds:g} s, burst {args.burst} events")
    print(f"| | stream (uvicorn, 1 process) | bare Redis pub/sub |\n|---|---:|---:|")
    for label, key, fmt in rows:
        print(f"| {label} | {fmt.format(stream[key])} | {fmt.format(bare[key])} |")
    print(f"(expected deliveries per burst: {args.burst * args.clients:,})")


if __name__ == "__main__":
    main()
