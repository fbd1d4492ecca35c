"""Delivery throughput per channel kind: real worker, local vendor stand-ins, the full outbox -> attempt path.

    .venv/bin/python bench/channels.py [--kinds webhook,slack,teams,pagerduty,opsgenie,email] [--alerts 1000]
                                       [--concurrency 4] [--baseline-requests 1000] [--slack-limit-alerts 120]

Uses DATABASE_URL (default postgres://postgres@127.0.0.1:5432/ac_channel_bench: dropped, created and migrated
at every run) and REDIS_URL (default redis://127.0.0.1:6379/4, flushed). Per kind, one tenant whose policy
routes every alert to one channel of that kind (webhook: the tenant's endpoint, the default route) pointing at
a local stand-in run in its own process (so its threads do not share the bench's GIL and its CPU is
measured apart): tests/delivery/vendors.py for Slack, Teams, PagerDuty and Opsgenie, the aiosmtpd sink of
tests/delivery/peers.py for email, apps.delivery.simulator for webhooks. Then, as in bench/delivery.py:

* baseline: a bare loop to the same stand-in in the same run, one client, no database: ``requests.post``
  of the same JSON body (and vendor headers) as the worker sends; for email, ``smtplib`` with one SMTP
  session per message (the email transport opens one per message too);
* drain: N alerts written with their outbox rows (transactions of 100) while the worker does not consume,
  then the worker consumes until all N are DELIVERED -> deliveries/s, ratio to the baseline, CPU per
  1,000 deliveries of worker / PostgreSQL (the bench database's backends) / stand-in.

The per-channel rate limits (CHANNEL_RATE_LIMIT_*, Slack 60/min by default) are raised for the drains, or
they would measure the limit; the output says so. Last, ``--slack-limit-alerts`` alerts go to a Slack channel
held to the default 60/min, started at a window boundary: how many were sent in the first minute, how many
waited, and that all arrived exactly once (about 1-2 minutes; 0 skips it).
"""
from __future__ import annotations

import argparse
import email.message
import math
import os
import smtplib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ac_channel_bench")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/4")
os.environ.update(WEBHOOK_ALLOW_HTTP="1")
KINDS = ("webhook", "slack", "teams", "pagerduty", "opsgenie", "email")
RAISED_LIMIT = "1000000"
# alertcenter/settings.py's default for CHANNEL_RATE_LIMIT_SLACK (Slack allows about 1 message/s per webhook);
# the demo sets it on its channel because this bench raises the kind's default for the drains.
DEFAULT_SLACK_LIMIT = 60
for _kind in ("slack", "teams", "pagerduty", "opsgenie", "email", "sms"):
    os.environ.setdefault(f"CHANNEL_RATE_LIMIT_{_kind.upper()}", RAISED_LIMIT)

# bench/delivery.py sets the shared bench environment (retry schedule, log level, broker = REDIS_URL) at import.
from delivery import consume, fire, reset_database
from proc_cpu import cpu_by_pid


class CpuMeter:
    """CPU used by a set of processes between start() and stop(), sampled every ``interval`` s so a
    process that exits meanwhile keeps what it used until its last sample. PostgreSQL backends do
    exit mid-drain: the worker drops its connection after CONN_MAX_AGE (60 s), and a one-shot
    reading at the end would lose their CPU (it once gave a negative figure)."""

    def __init__(self, interval: float = 0.25, exclude: frozenset[int] = frozenset(), **select: object) -> None:
        self.select, self.interval, self.exclude = select, interval, exclude
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        self.last.update(cpu_by_pid(**self.select))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self) -> CpuMeter:
        self.first = cpu_by_pid(**self.select)
        self.last = dict(self.first)
        self._thread.start()
        return self

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self._sample()
        return sum(v - self.first.get(pid, 0.0) for pid, v in self.last.items() if pid not in self.exclude)

STAND_IN = """
import sys, threading
sys.path.insert(0, {root!r})
kind = {kind!r}
if kind == "email":
    from tests.delivery.peers import SmtpServer
    server = SmtpServer().__enter__()
    url, count = f"smtp://127.0.0.1:{{server.port}}", lambda: len(server.envelopes)
elif kind == "webhook":
    from apps.delivery.simulator import Simulator, SimulatorConfig
    server = Simulator("127.0.0.1", 0, SimulatorConfig(quiet=True))
    server.server.socket.listen(1024)
    server.serve_in_thread()
    url, count = f"http://127.0.0.1:{{server.port}}/bench", lambda: server.requests
else:
    from tests.delivery import vendors
    cls = {{"slack": vendors.SlackServer, "teams": vendors.TeamsServer, "pagerduty": vendors.PagerDutyServer,
            "opsgenie": vendors.OpsgenieServer}}[kind]
    server = cls().__enter__()
    # socketserver listens with a backlog of 5: the worker's 64 send threads would overflow it and
    # wait for SYN retransmits (1 s), which measures the stand-in, not the delivery path.
    server._server.socket.listen(1024)
    url, count = server.url, lambda: len(server.requests)
print(url, flush=True)
for _ in sys.stdin:  # each line asks: how many requests (messages) have arrived so far?
    print(count(), flush=True)
"""


class StandIn:
    """A vendor stand-in in its own process group (its CPU is read by pgid); asked for its count over stdin."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.proc = subprocess.Popen([sys.executable, "-c", STAND_IN.format(root=str(ROOT), kind=kind)], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
        self.url = self.proc.stdout.readline().strip()
        if not self.url:
            raise SystemExit(f"the {kind} stand-in did not start (exit code {self.proc.poll()})")

    def received(self) -> int:
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def channel_config(stand_in: StandIn) -> dict[str, str]:
    from tests.delivery import vendors

    return {"slack": {"webhook_url": stand_in.url}, "teams": {"webhook_url": stand_in.url},
            "pagerduty": {"routing_key": vendors.PD_ROUTING_KEY, "base_url": stand_in.url},
            "opsgenie": {"api_key": vendors.OPSGENIE_KEY, "base_url": stand_in.url},
            "email": {"recipients": "oncall@bench.example, lead@bench.example"}}[stand_in.kind]


def destination(slug: str, stand_in: StandIn, *, rate_limit: int | None = None):
    """A tenant routing every alert to one destination of the stand-in's kind, as the API would store it
    (secrets sealed, the policy sends to that channel only). Returns (tenant, Delivery filter)."""
    from apps.delivery.models import NotificationChannel, NotificationPolicy
    from apps.delivery.secrets import seal_channel_secrets
    from apps.delivery.services import create_endpoint
    from apps.delivery.transports.channels import CONFIG_FIELDS, validate_config
    from apps.tenants.models import Tenant

    tenant = Tenant.objects.create(slug=slug, name=slug)
    kind = stand_in.kind
    if kind == "webhook":
        endpoint, _ = create_endpoint(tenant=tenant, url=stand_in.url, event_types=["alert.triggered"])
        return tenant, {"endpoint": endpoint}
    clean = validate_config(kind, channel_config(stand_in))
    secret = {k: v for k, v in clean.items() if CONFIG_FIELDS[kind][k]["secret"]}
    channel = NotificationChannel.objects.create(
        tenant=tenant, kind=kind, name=f"{kind}-bench", rate_limit_per_minute=rate_limit,
        config={k: v for k, v in clean.items() if not CONFIG_FIELDS[kind][k]["secret"]},
        secrets_encrypted=seal_channel_secrets(secret))
    policy = NotificationPolicy.objects.create(tenant=tenant, name="everything", webhooks=False)
    policy.channels.set([channel])
    return tenant, {"notification_channel": channel}


def wait_delivered(where: dict, n: int, timeout: float = 600) -> float:
    """perf_counter() when ``n`` rows of ``where`` are DELIVERED; stops at the first FAILED one."""
    from apps.delivery.models import Delivery

    rows = Delivery.objects.filter(**where)
    deadline = time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline:
        done = rows.filter(state="DELIVERED").count()
        if done >= n:
            return time.perf_counter()
        failed = rows.filter(state="FAILED").first()
        if failed:
            raise SystemExit(f"delivery {failed.pk} FAILED: {failed.last_error}")
        time.sleep(0.05)
    raise SystemExit(f"timed out: {done}/{n} delivered")


def one_request(where: dict, stand_in: StandIn) -> tuple[str, bytes, dict[str, str]]:
    """URL, body and headers of what the worker sends for one queued row (secrets put back as the
    transport does), for the baseline to send the same bytes."""
    import orjson

    from apps.delivery.models import Delivery
    from apps.delivery.transports.channels import ChannelRequest
    from tests.delivery import vendors

    row = Delivery.objects.filter(**where).first()
    if stand_in.kind == "webhook":
        return stand_in.url, bytes(row.body), {"Content-Type": "application/json", "webhook-id": row.msg_id}
    request = ChannelRequest.decode(bytes(row.body))
    payload, headers = request.payload, {"Content-Type": "application/json"}
    if stand_in.kind == "pagerduty":
        payload = {"routing_key": vendors.PD_ROUTING_KEY, **payload}
    if stand_in.kind == "opsgenie":
        headers["Authorization"] = f"GenieKey {vendors.OPSGENIE_KEY}"
    return stand_in.url + request.path, orjson.dumps(payload), headers


def baseline(where: dict, stand_in: StandIn, n: int) -> float:
    """Bare requests/s (messages/s for email) to the stand-in: one client, no database, no rendering."""
    import requests

    from apps.delivery.models import Delivery
    from apps.delivery.transports.channels import ChannelRequest

    if stand_in.kind == "email":
        fields = ChannelRequest.decode(bytes(Delivery.objects.filter(**where).first().body)).payload
        msg = email.message.EmailMessage()
        msg["Subject"], msg["From"] = fields["subject"], "Alert Center <alerts@localhost>"
        msg["To"] = "oncall@bench.example, lead@bench.example"
        msg.set_content(fields["text"])
        if fields.get("html"):
            msg.add_alternative(fields["html"], subtype="html")
        host, port = stand_in.url.removeprefix("smtp://").split(":")
        start = time.perf_counter()
        for _ in range(n):
            with smtplib.SMTP(host, int(port), timeout=10) as smtp:
                smtp.send_message(msg)
        return n / (time.perf_counter() - start)
    url, body, headers = one_request(where, stand_in)
    start = time.perf_counter()
    for _ in range(n):
        requests.post(url, data=body, headers=headers, timeout=10).raise_for_status()
    return n / (time.perf_counter() - start)


def drain(app, hostname: str, worker_pid: int, stand_in: StandIn, n: int, warm: int, baseline_n: int) -> dict:
    """Warm the worker on this kind, queue ``n`` alerts with the worker not consuming, drain, measure."""
    tenant, where = destination(f"bench-{stand_in.kind}", stand_in)
    fire(tenant, warm)
    wait_delivered(where, warm, timeout=120)  # the worker's processes have sent this kind before
    consume(app, hostname, on=False)
    fire(tenant, n)
    base = baseline(where, stand_in, baseline_n)
    db_name = os.environ["DATABASE_URL"].rsplit("/", 1)[1]

    from django.db import connection

    before_requests = stand_in.received()
    with connection.cursor() as cursor:  # the backend of this bench's own polling is not the system's work
        cursor.execute("SELECT pg_backend_pid()")
        polling = frozenset([cursor.fetchone()[0]])
    meters = [CpuMeter(pgid=worker_pid).start(), CpuMeter(cmdline_has=f" {db_name} ", exclude=polling).start(),
              CpuMeter(pgid=stand_in.proc.pid).start()]
    d0 = time.perf_counter()
    consume(app, hostname, on=True)
    seconds = wait_delivered(where, warm + n) - d0
    used = [m.stop() * 1000 / n * 1000 for m in meters]
    return {"kind": stand_in.kind, "rate": n / seconds, "seconds": seconds, "base": base, "cpu": used,
            "received": stand_in.received() - before_requests, "load": os.getloadavg()[0]}


def slack_limit(stand_in: StandIn, n: int) -> str:
    """``n`` alerts to a Slack channel held to the default limit, fired at the start of a rate-limit window."""
    from apps.delivery.models import Delivery

    tenant, where = destination("bench-slack-limit", stand_in, rate_limit=DEFAULT_SLACK_LIMIT)
    rows = Delivery.objects.filter(**where)
    before = stand_in.received()
    time.sleep(60 - time.time() % 60 + 0.2)  # windows are fixed, numbered floor(epoch / 60)
    window_end = (math.floor(time.time() / 60) + 1) * 60
    t0 = time.perf_counter()
    fire(tenant, n)
    time.sleep(max(0.0, window_end - 0.5 - time.time()))
    first_minute = rows.filter(state="DELIVERED").count()
    waiting = rows.filter(state="PENDING", attempts=0).count()
    done = wait_delivered(where, n, timeout=60 * (n // DEFAULT_SLACK_LIMIT + 2))
    extra_attempts = rows.exclude(attempts=1).count()
    received = stand_in.received() - before
    verdict = "none lost or sent twice" if received == n and not extra_attempts else "MISMATCH"
    return (f"{n} alerts to one Slack channel at the default {DEFAULT_SLACK_LIMIT}/min (set on the channel): "
            f"{first_minute} sent in the first minute, {waiting} waiting with no attempt; all {n} DELIVERED after "
            f"{done - t0:.0f} s, stand-in got {received}, rows with more than one attempt {extra_attempts}: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kinds", default="webhook", help=f"comma-separated, of {','.join(KINDS)}")
    parser.add_argument("--alerts", type=int, default=1000, help="queued alerts drained per kind")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--baseline-requests", type=int, default=1000)
    parser.add_argument("--slack-limit-alerts", type=int, default=120, help="0 skips the default-limit check")
    args = parser.parse_args()
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        parser.error(f"--kinds: unknown {', '.join(unknown) or '(none given)'}; known: {', '.join(KINDS)}")
    if args.alerts < 1 or args.baseline_requests < 1 or args.slack_limit_alerts < 0:
        parser.error("--alerts and --baseline-requests must be at least 1, --slack-limit-alerts at least 0")

    stand_ins: dict[str, StandIn] = {}
    procs: list[subprocess.Popen] = []
    stop = threading.Event()
    try:
        for kind in set(kinds) | ({"slack"} if args.slack_limit_alerts else set()):
            stand_ins[kind] = StandIn(kind)
        if "email" in stand_ins:  # the worker (a child) reads it at start
            os.environ["EMAIL_URL"] = stand_ins["email"].url
        reset_database(os.environ["DATABASE_URL"])
        import django

        django.setup()
        import redis
        from django.conf import settings
        from django.core.management import call_command
        from django.db import connection

        from alertcenter.celery import app
        from apps.delivery import dispatch

        call_command("migrate", verbosity=0)
        redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
        hostname = f"bench-channels-{os.getpid()}@{socket.gethostname()}"
        worker = subprocess.Popen(
            [str(Path(sys.executable).parent / "celery"), "-A", "alertcenter", "worker", "-Q", "deliver",
             "--concurrency", str(args.concurrency), "--pool", "prefork",
             "--loglevel", os.environ.get("BENCH_WORKER_LOGLEVEL", "WARNING"),
             "--without-gossip", "--without-mingle", "--hostname", hostname],
            cwd=ROOT, start_new_session=True)
        procs.append(worker)

        def sweep_loop() -> None:
            while not stop.wait(0.5):
                dispatch.sweep()
            connection.close()

        threading.Thread(target=sweep_loop, daemon=True).start()
        results = [drain(app, hostname, worker.pid, stand_ins[kind], args.alerts, 20 * args.concurrency,
                         args.baseline_requests) for kind in kinds]
        limit_line = slack_limit(stand_ins["slack"], args.slack_limit_alerts) if args.slack_limit_alerts else (
            "default Slack limit check skipped (--slack-limit-alerts 0)")
    finally:
        stop.set()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        for s in stand_ins.values():
            s.stop()

    limits = ", ".join(f"{k} {v:,}" for k, v in settings.CHANNEL_RATE_LIMITS.items())
    print(f"cpus: {os.cpu_count()}, worker: prefork, concurrency {args.concurrency}, "
          f"DELIVERY_BATCH_SIZE {settings.DELIVERY_BATCH_SIZE}, {args.alerts} queued alerts drained per kind")
    print(f"rate limits RAISED for the drains (CHANNEL_RATE_LIMIT_*, per minute): {limits}")
    header = ("kind", "deliveries/s", "baseline/s", "ratio", "CPU ms/1,000: worker", "PostgreSQL", "stand-in",
              "load")
    table = [header] + [
        (r["kind"], f"{r['rate']:,.0f}", f"{r['base']:,.0f}", f"{r['rate'] / r['base']:.2f}x",
         *(f"{ms:,.0f}" for ms in r["cpu"]), f"{r['load']:.1f}") for r in results]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    for r in results:
        if r["received"] != args.alerts:
            print(f"WARNING: the {r['kind']} stand-in received {r['received']} messages for {args.alerts} alerts")
    print("baseline: one client, no database; requests.post of the same body (email: smtplib, one session each)")
    print(limit_line)


if __name__ == "__main__":
    main()
