"""The reliability harness: the real stack (gunicorn web, Celery worker processes, sweeper
processes, local receiver / SMTP sink / SMS API) and the data every scenario starts from.

Used by the tests in this folder (small sizes) and by ``bench/chaos.py`` (bigger ones), so it has
no pytest fixtures: plain functions and context managers, scoped to one tenant per scenario.
"""
from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import orjson
import requests

from apps.ingest import tenancy
from apps.ingest.models import BatchStatus, IngestBatch
from apps.tenants.models import FallbackContact, Tenant
from apps.tenants.tokens import issue_token
from tests.delivery.peers import Hook, SmsServer, SmtpServer, peer_env
from tests.support.processes import (BASE_DIR, BIN, celery_worker, child_env, free_port, gunicorn_web, stop_process,
                                     wait_for)

from .invariants import Expectation

RULE_KEY = "reliability-burst"
THRESHOLD = 10
RULE_PACK = f"""
rules:
  - id: {RULE_KEY}
    name: Reliability burst
    category: error
    match: {{levels: [ERROR], keywords: [], patterns: []}}
    threshold: {{count: {THRESHOLD}, window: 1h}}
    group_by: [tenant_id, plugin_id]
    severity: critical
    cooldown: 1h
    recommended_action: Check the plugin.
"""
NOTIFY = ["alert.triggered", "alert.escalated"]


def load_rule() -> None:
    from apps.rules import engine
    from apps.rules.services import pack_import

    pack_import(text=RULE_PACK, actor="reliability", source="pack:reliability")
    engine.reset_cache()


# --------------------------------------------------------------------------- peers


class Receiver(Hook):
    """``Hook`` that also keeps the status it answered on each request (``req["status"]``)."""

    def __init__(self, script: Callable[[int, str, bytes], tuple[int, dict]] | None = None):
        decide = script or (lambda n, path, body: (200, {}))

        def recorded(n: int, path: str, body: bytes) -> tuple[int, dict]:
            status, headers = decide(n, path, body)
            with self.lock:
                self.requests[n - 1]["status"] = status
            return status, headers

        super().__init__(recorded)
        self.running = False

    def __enter__(self):
        super().__enter__()
        self.running = True
        return self

    def __exit__(self, *exc):
        if self.running:
            self.down()

    def down(self) -> None:
        """Stop listening: connections to the port are refused until ``up()``."""
        self.server.shutdown()
        self.server.server_close()
        self.running = False

    def up(self) -> None:
        """Listen again on the same port (endpoints keep their URL)."""
        from tests.support.http import PeerServer

        self.server = PeerServer(("127.0.0.1", self.port), self.server.RequestHandlerClass)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.running = True


def flaky_script(*, seed: int = 8, fail_rate: float = 0.3, max_failures_per_id: int = 3, timeout_every: int = 0,
                 timeout_sleep: float = 0.0, retry_after_every: int = 7) -> Callable:
    """Answer 500 on ``fail_rate`` of requests at random (seeded), 429 + Retry-After: 1 on every
    ``retry_after_every``-th request, sleep past the sender's timeout on every ``timeout_every``-th,
    410 on paths ending in /gone, and 200 once a webhook-id failed ``max_failures_per_id`` times (so
    every delivery finishes within the retry window).

    "Every k-th" counts only the requests this script decides (not /gone, not a webhook-id already
    past its failures): counting every request made whether a 429 ever happened depend on how the
    sender's concurrent requests interleaved with the /gone ones, and one run in ten saw none."""
    rng = random.Random(seed)
    lock = threading.Lock()
    failures: dict[str, int] = {}
    hook_ref: dict = {}
    decided = [0]

    def script(n: int, path: str, body: bytes) -> tuple[int, dict]:
        if path.endswith("/gone"):
            return 410, {}
        wid = hook_ref["hook"].requests[n - 1]["headers"].get("webhook-id", "")
        with lock:
            if failures.get(wid, 0) >= max_failures_per_id:
                return 200, {}
            roll = rng.random()
            decided[0] += 1
            n = decided[0]
        answer: tuple[int, dict] = (200, {})
        if timeout_every and n % timeout_every == 0:
            time.sleep(timeout_sleep)
            answer = (200, {})  # too late: the sender gave up, it counts as a failure there
            with lock:
                failures[wid] = failures.get(wid, 0) + 1
            return answer
        if retry_after_every and n % retry_after_every == 0:
            answer = (429, {"Retry-After": "1"})
        elif roll < fail_rate:
            answer = (500, {})
        if answer[0] != 200:
            with lock:
                failures[wid] = failures.get(wid, 0) + 1
        return answer

    script.hook_ref = hook_ref  # type: ignore[attr-defined]
    return script


@dataclass
class Peers:
    hook: Receiver
    smtp: SmtpServer
    sms: SmsServer


@contextmanager
def peers(script: Callable | None = None) -> Iterator[Peers]:
    hook = Receiver(script)
    if script is not None and hasattr(script, "hook_ref"):
        script.hook_ref["hook"] = hook
    with hook, SmtpServer() as smtp, SmsServer() as sms:
        yield Peers(hook, smtp, sms)


def worker_env(p: Peers, **extra: str) -> dict[str, str]:
    base = {"DELIVERY_RETRY_SCHEDULE": "1,1,1,1,1,1", "DELIVERY_MAX_AGE_SECONDS": "600",
            "INGEST_SWEEP_AFTER_SECONDS": "1"}
    base.update(extra)
    return peer_env(p.smtp, p.sms, **base)


# --------------------------------------------------------------------------- processes


@contextmanager
def web(log_dir: Path, *, env: dict[str, str] | None = None, workers: int = 2) -> Iterator[str]:
    """A real gunicorn (the project's config) on the test database; yields its base URL."""
    with gunicorn_web(log_dir, workers=workers, env=env) as base:
        yield base


@contextmanager
def sweepers(log_dir: Path, *, count: int = 1, interval: float = 0.3, lease: int = 3, grace: float = 1.0,
             escalate: bool = False, env: dict[str, str] | None = None) -> Iterator[list[subprocess.Popen]]:
    """``count`` sweeper processes (``tests.reliability.sweeper_proc``): what beat's detect.sweep,
    deliver.sweep (and alerts.escalate) run, ticking faster than beat."""
    procs = []
    try:
        for i in range(count):
            log = open(log_dir / f"sweeper-{i}-{os.getpid()}-{time.monotonic_ns()}.log", "wb")
            args = [str(BIN / "python"), "-m", "tests.reliability.sweeper_proc", "--interval", str(interval),
                    "--lease", str(lease), "--grace", str(grace)] + (["--escalate"] if escalate else [])
            procs.append(subprocess.Popen(args, cwd=BASE_DIR, env=child_env(**{"INGEST_SWEEP_AFTER_SECONDS": "1",
                                                                               **(env or {})}),
                                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            log.close()
        yield procs
    finally:
        for p in procs:
            stop_process(p)


def kill9(proc: subprocess.Popen) -> None:
    """SIGKILL the worker's whole process group (main process and its pool children)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


# --------------------------------------------------------------------------- the world


@dataclass
class World:
    tenant: Tenant
    token: str
    endpoint_ids: list[int] = field(default_factory=list)
    sent: int = 0
    accepted: int = 0
    counted: dict[str, int] = field(default_factory=dict)
    batches: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, events: list[dict], resp: requests.Response) -> None:
        """Count one answered POST of ``events`` (thread-safe: the burst sends from several threads)."""
        body = resp.json() if resp.status_code == 202 else None
        with self.lock:
            self.sent += len(events)
            if body is not None:
                assert body["accepted"] == len(events) and not body["rejected"], body
                self.accepted += len(events)
                self.batches.add(body["batch_id"])
                for e in events:
                    if e["level"] == "ERROR":
                        self.counted[e["plugin_id"]] = self.counted.get(e["plugin_id"], 0) + 1

    def expectation(self, **kw) -> Expectation:
        return Expectation(tenant_id=self.tenant.pk, rule_key=RULE_KEY, threshold=THRESHOLD, counted=dict(self.counted),
                           accepted=self.accepted, sent=self.sent, accepted_batches=set(self.batches),
                           endpoint_ids=kw.pop("endpoint_ids", self.endpoint_ids), **kw)


def make_world(slug: str, hook: Receiver | None, *, endpoints: tuple[str, ...] = ("a",)) -> World:
    """A tenant with a logs:write token, fallback email + SMS, and webhook endpoints ``hook.url/<name>``."""
    from apps.delivery.services import create_endpoint

    load_rule()
    tenancy.clear_caches()
    tenant = Tenant.objects.create(slug=slug, name=slug.title())
    FallbackContact.objects.create(tenant=tenant, kind="email", value=f"ops@{slug}.example")
    FallbackContact.objects.create(tenant=tenant, kind="sms", value="+15550002222")
    token = issue_token(name=f"{slug}-writer", scopes="logs:write", tenant=tenant)[1]
    ids = []
    if hook is not None:
        for name in endpoints:
            ep, _ = create_endpoint(tenant=tenant, url=f"{hook.url}/{name}", event_types=list(NOTIFY))
            ids.append(ep.pk)
    return World(tenant=tenant, token=token, endpoint_ids=ids)


def make_batch(world: World, *, plugins: int, errors_per_plugin: int, noise: int = 0, tag: str = "",
               first_plugin: int = 0, ts: datetime | None = None) -> list[dict]:
    """``errors_per_plugin`` ERROR lines for plugins p<first_plugin>.. and ``noise`` INFO lines; ``ts``
    (default: now) is the shipper's clock."""
    now = (ts or datetime.now(timezone.utc)).isoformat()
    events = []
    for p in range(first_plugin, first_plugin + plugins):
        for i in range(errors_per_plugin):
            events.append({"ts": now, "level": "ERROR", "message": f"upstream failed {tag} {i}",
                           "tenant_id": world.tenant.slug, "plugin_id": f"p{p}"})
    for i in range(noise):
        events.append({"ts": now, "level": "INFO", "message": f"served {tag} {i}", "tenant_id": world.tenant.slug,
                       "plugin_id": f"p{first_plugin + i % max(plugins, 1)}"})
    return events


def post(base: str, world: World, events: list[dict], *, session: requests.Session | None = None,
         timeout: float = 30) -> requests.Response:
    """POST one batch; on 202 the world records what was accepted (events are all valid here)."""
    s = session or requests
    resp = s.post(f"{base}/api/v1/logs", data=orjson.dumps(events), timeout=timeout,
                  headers={"Authorization": f"Bearer {world.token}", "Content-Type": "application/json"})
    world.record(events, resp)
    return resp


def done_batches(world: World) -> int:
    return IngestBatch.objects.filter(tenant=world.tenant, status=BatchStatus.DONE).count()


def wait_settled(world: World, *, timeout: float = 90, what: str = "all work settled") -> float:
    """Wait until every batch is processed and no delivery is in flight; returns the seconds waited."""
    from .invariants import settled

    t0 = time.monotonic()
    wait_for(lambda: settled(world.tenant.pk), timeout=timeout, interval=0.25, what=what)
    return time.monotonic() - t0


# --------------------------------------------------------------------------- PostgreSQL outage


class TcpProxy:
    """A TCP forwarder on 127.0.0.1 to ``target`` that can be taken down and up again.

    Down: the listening socket is closed (new connections are refused) and every open connection
    is cut, which is what a web process sees when PostgreSQL stops.
    """

    def __init__(self, target_host: str = "127.0.0.1", target_port: int = 5432):
        self.target = (target_host, target_port)
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.base_events.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self.writers -= {writer, up_writer}

    async def _start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for w in list(self.writers):
            w.transport.abort()
        self.writers.clear()

    def up(self) -> None:
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(5)

    def down(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(5)

    def __enter__(self) -> "TcpProxy":
        self.thread.start()
        self.up()
        return self

    def __exit__(self, *exc) -> None:
        self.down()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def proxied_database_url(proxy: TcpProxy) -> str:
    from django.db import connection

    s = connection.settings_dict
    return f"postgres://{s['USER']}@127.0.0.1:{proxy.port}/{s['NAME']}"


__all__ = ["ExitStack", "RULE_KEY", "THRESHOLD", "Peers", "Receiver", "TcpProxy", "World", "celery_worker",
           "done_batches", "flaky_script", "kill9", "make_batch", "make_world", "peers", "post", "sweepers", "web",
           "wait_settled", "worker_env"]
