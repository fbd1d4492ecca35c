"""Metrics benchmark: samples/s accepted over HTTP, and metric rule evaluation time at 10,000 series.

    .venv/bin/python bench/metrics.py [--seconds 10] [--clients 4] [--series 10000] [--format json|text|both]

Creates its own PostgreSQL database (ac_bench_metrics, dropped and recreated) and uses Redis db 15
(BENCH_DB / BENCH_REDIS_URL override both).
  1. intake, per --format (default both): starts gunicorn (2 workers, the 2-core box) and posts
     bodies of 5,000 samples (5,000 series of one tenant, new timestamps each time) from --clients
     threads for --seconds: samples/s accepted (202, rolled up and committed). "text" bodies are
     Prometheus exposition text, "json" bodies the ``[{name, labels, value, ts}]`` array;
  2. baseline per format, same bodies in this process, one core: the bare parse
     (``prometheus_client``'s text parser / ``orjson.loads``) alone, and the parse + dict
     aggregation per (series, minute);
  3. evaluation: --series series with 65 minutes of rollups, then one threshold rule (avg over
     5 min, 1 % of series violating), one absence rule and one anomaly rule (previous-hour
     baseline) over all of them, timed with ``apps.rules.metric_eval.evaluate_rule`` (second run:
     steady state, alerts already open); also given as the equivalent samples/s at a 15 s scrape
     interval (series x 20 samples in a 5-minute window / evaluation time).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from datetime import UTC
from pathlib import Path

import orjson
import requests

BASE = Path(__file__).resolve().parent.parent
PY = sys.executable
BIN = Path(PY).parent
DB = os.environ.get("BENCH_DB", "ac_bench_metrics")
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
PORT = 8714
PER_BODY = 5000


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.update(DATABASE_URL=f"{PG}/{DB}", REDIS_URL=REDIS, CELERY_BROKER_URL="", CACHE_URL="",
             SECRET_KEY="bench-only-secret", DEBUG="0", LOG_LEVEL="WARNING", LOG_FORMAT="text",
             INGEST_TENANT_EVENTS_PER_SECOND="100000000", METRICS_MAX_SERIES_PER_TENANT="1000000",
             DJANGO_SETTINGS_MODULE="alertcenter.settings", PYTHONUNBUFFERED="1", ALLOWED_HOSTS="127.0.0.1")
    return e


def setup_database() -> None:
    import psycopg
    import redis

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB}"')
    redis.Redis.from_url(REDIS).flushdb()
    subprocess.run([PY, "manage.py", "migrate", "-v", "0"], cwd=BASE, env=env(), check=True)


def body(t: float) -> bytes:
    lines = ["# TYPE bench_cpu gauge"]
    ms = int(t * 1000)
    lines += [f'bench_cpu{{instance="host-{i // 10:04d}",cpu="{i % 10}"}} {i % 97 / 97:.4f} {ms}'
              for i in range(PER_BODY)]
    return ("\n".join(lines) + "\n").encode()


def json_body(t: float) -> bytes:
    return orjson.dumps([{"name": "bench_cpu", "labels": {"instance": f"host-{i // 10:04d}", "cpu": str(i % 10)},
                          "value": round(i % 97 / 97, 4), "ts": t} for i in range(PER_BODY)])


FORMATS = {  # name -> (body maker, Content-Type)
    "text": (body, "text/plain; version=0.0.4"),
    "json": (json_body, "application/json"),
}


def cpu_seconds(web_pgid: int) -> dict[str, float]:
    """CPU seconds so far of the gunicorn processes, this database's PostgreSQL backends and this
    process (the posting clients), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {"web": 0.0, "postgres": 0.0}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        used = (int(fields[11]) + int(fields[12])) / tick
        if int(fields[2]) == web_pgid:
            out["web"] += used
        elif cmdline.startswith("postgres: ") and f" {DB} " in cmdline:
            out["postgres"] += used
    times = os.times()
    out["client"] = times.user + times.system
    return out


def intake(seconds: float, clients: int, token: str, fmt: str) -> tuple[float, int]:
    url = f"http://127.0.0.1:{PORT}/api/v1/metrics"
    make_body, content_type = FORMATS[fmt]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
    accepted = [0] * clients
    stop = time.monotonic() + seconds

    def run(slot: int) -> None:
        s = requests.Session()
        while time.monotonic() < stop:
            r = s.post(url, data=make_body(time.time()), headers=headers, timeout=60)
            r.raise_for_status()
            accepted[slot] += r.json()["accepted"]

    t0 = time.monotonic()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(accepted) / (time.monotonic() - t0), sum(accepted)


def _parsed(fmt: str, raw: bytes) -> list[tuple[str, dict, float, float | None]]:
    """(name, labels, value, ts) of every sample of a body: the bare parse, nothing else."""
    if fmt == "json":
        return [(d["name"], d["labels"], d["value"], d["ts"]) for d in orjson.loads(raw)]
    from prometheus_client.parser import text_string_to_metric_families

    return [(s.name, s.labels, s.value, s.timestamp)
            for family in text_string_to_metric_families(raw.decode()) for s in family.samples]


def baseline(seconds: float, fmt: str, *, aggregate: bool) -> float:
    """Samples/s on one core of the bare parse (and, with ``aggregate``, a dict rollup per
    (series, minute)) of the bench's bodies; building the bodies is not timed."""
    make_body = FORMATS[fmt][0]
    done, spent = 0, 0.0
    while spent < seconds:
        raw = make_body(time.time())
        t0 = time.monotonic()
        agg: dict[tuple, list] = {}
        for name, labels, value, ts in _parsed(fmt, raw):
            if aggregate:
                key = (name, tuple(sorted(labels.items())), int((ts or 0) // 60))
                acc = agg.get(key)
                if acc is None:
                    agg[key] = [1, value, value, value, value * value, value]
                else:
                    acc[0] += 1
                    acc[1] += value
                    acc[5] = value
            done += 1
        spent += time.monotonic() - t0
    return done / spent


def evaluation(n_series: int) -> list[tuple[str, float, dict]]:
    from datetime import datetime

    from apps.rules import fastpath, metric_eval
    from apps.rules.models import MetricSeries
    from apps.rules.spec import parse_rule
    from apps.tenants.models import Tenant

    tenant = Tenant.objects.create(slug="evalbench", name="Eval bench")
    now = datetime.now(UTC)
    t_end = int(now.timestamp() // 60) * 60
    ids = fastpath.insert_series(tenant.pk, [(f"h{i}", "eval_load", {"instance": f"i{i:05d}"})
                                             for i in range(n_series)], now)
    series_ids = sorted(ids.values())
    t0 = time.monotonic()
    for m in range(65):
        minute = t_end - (64 - m) * 60
        rows = []
        for k, sid in enumerate(series_ids):
            v = 1.0 + (k % 7) * 0.01 + (m % 2) * 0.02
            if k % 100 == 0 and m >= 60:
                v = 50.0  # 1 % of the series violate (and are anomalous) in the last 5 minutes
            rows.append((sid, minute, 4, 4 * v, v, v, 4 * v * v, v, minute + 50))
        fastpath.upsert_rollups(rows)
    print(f"  loaded {n_series:,} series x 65 minutes of rollups in {time.monotonic() - t0:.1f} s")
    specs = {
        "threshold avg 5m > 10": {"id": "b-thr", "kind": "threshold", "name": "t", "metric": "eval_load",
                                  "aggregation": "avg", "window": "5m", "op": ">", "value": 10, "severity": "warning"},
        "absence for 10m": {"id": "b-abs", "kind": "absence", "name": "a", "metric": "eval_load", "for": "10m",
                            "severity": "warning"},
        "anomaly previous hour": {"id": "b-ano", "kind": "anomaly", "name": "z", "metric": "eval_load",
                                  "window": "5m", "baseline": "previous", "severity": "warning"},
    }
    out = []
    at = datetime.fromtimestamp(t_end + 55, UTC)
    for label, raw in specs.items():
        spec = parse_rule(raw)
        metric_eval.evaluate_rule(spec, now=at)  # first run opens the alerts
        t0 = time.monotonic()
        counts = metric_eval.evaluate_rule(spec, now=at)
        out.append((label, time.monotonic() - t0, counts))
    assert MetricSeries.objects.filter(tenant=tenant).count() == n_series
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--series", type=int, default=10_000, help="series for the evaluation part (0 skips it)")
    parser.add_argument("--format", choices=["json", "text", "both"], default="both",
                        help="body format(s) of the intake part")
    args = parser.parse_args()
    formats = ["json", "text"] if args.format == "both" else [args.format]
    setup_database()
    os.environ.update(env())
    sys.path.insert(0, str(BASE))
    import django

    django.setup()
    from apps.tenants.models import Tenant
    from apps.tenants.tokens import issue_token

    tenant = Tenant.objects.create(slug="bench", name="Bench")
    token = issue_token(name="bench", scopes="metrics:write", tenant=tenant)[1]
    log_dir = BASE / "var" / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    web = subprocess.Popen([str(BIN / "gunicorn"), "-c", "alertcenter/gunicorn.conf.py", "alertcenter.wsgi"], cwd=BASE,
                           env={**env(), "WEB_BIND": f"127.0.0.1:{PORT}", "WEB_WORKERS": "2",
                                "PROMETHEUS_MULTIPROC_DIR": str(log_dir / "prom-metrics")},
                           stdout=open(log_dir / "metrics-gunicorn.log", "wb"), stderr=subprocess.STDOUT,
                           start_new_session=True)
    try:
        for _ in range(100):
            try:
                if requests.get(f"http://127.0.0.1:{PORT}/-/live", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        intake(2, 1, token, formats[0])  # warm-up: creates the 5,000 series (both formats: the same ones)
        rates, cpu = {}, {}
        for fmt in formats:
            before = cpu_seconds(web.pid)
            rates[fmt] = intake(args.seconds, args.clients, token, fmt)
            after = cpu_seconds(web.pid)
            cpu[fmt] = {k: (after[k] - before[k]) * 1000 / (rates[fmt][1] / 1000) for k in after}
    finally:
        os.killpg(web.pid, 15)
        web.wait(15)
    parser_name = {"text": "prometheus_client text parser", "json": "orjson.loads"}
    for fmt in formats:
        rate, total = rates[fmt]
        parse_only = baseline(min(args.seconds, 5), fmt, aggregate=False)
        base_rate = baseline(min(args.seconds, 5), fmt, aggregate=True)
        print(f"\nintake, {fmt}, {PER_BODY:,} samples per body, {args.clients} clients, gunicorn 2 workers:")
        print(f"  samples/s accepted (HTTP 202, rolled up, committed)   {rate:>12,.0f}   ({total:,} in {args.seconds:.0f} s)")
        print(f"  parse only: {parser_name[fmt]:<30}            {parse_only:>12,.0f}   (one core, no HTTP/DB)")
        print(f"  baseline: parse + dict rollup                         {base_rate:>12,.0f}   (one core, no HTTP/DB)")
        print(f"  accepted / baseline                                   {rate / base_rate:>12.1%}")
        print("  CPU ms per 1,000 samples: web / PostgreSQL / posting client   "
              f"{cpu[fmt]['web']:.1f} / {cpu[fmt]['postgres']:.1f} / {cpu[fmt]['client']:.1f}")
    if not args.series:
        return
    print(f"\nevaluation, {args.series:,} series (steady state, second run):")
    for label, seconds, counts in evaluation(args.series):
        equivalent = args.series * 20 / seconds
        print(f"  {label:<24} {seconds * 1000:>8.0f} ms   groups {counts['groups']:>6,}   "
              f"fired/updated/resolved {counts['fired']}/{counts['updated']}/{counts['resolved']}   "
              f"= {equivalent:,.0f} samples/s at 15 s scrapes")


if __name__ == "__main__":
    main()
