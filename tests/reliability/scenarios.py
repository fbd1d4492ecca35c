"""The fault scenarios, each driving the real stack and ending with the invariant report.

Every function takes a log directory and sizes (the tests pass small ones, ``bench/chaos.py``
bigger ones), uses its own tenant slug, stops every process it started (context managers), and
returns ``(Report, facts)``: the invariants' report (``recover_s`` filled) and scenario facts the
tests assert on (e.g. how many batches were done when the worker was killed).
"""
from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import redis as redis_lib
import requests
from django.conf import settings

from apps.alerts.models import Alert
from apps.core import clock
from apps.delivery.models import WebhookEndpoint
from apps.ingest.models import IngestBatch
from tests.support.processes import wait_for

from .harness import (TcpProxy, celery_worker, done_batches, flaky_script, kill9, make_batch, make_world, peers,
                      post, proxied_database_url, sweepers, wait_settled, web, worker_env)
from .invariants import Report, collect


def _finish(world, p, name: str, recover_s: float, **expect) -> Report:
    report = collect(world.expectation(**expect), hook=p.hook, smtp=p.smtp, sms=p.sms, scenario=name)
    report.recover_s = round(recover_s, 1)
    return report


def _post_all(base: str, world, batches: list[list[dict]]) -> None:
    with requests.Session() as s:
        for events in batches:
            resp = post(base, world, events, session=s)
            assert resp.status_code == 202, (resp.status_code, resp.text[:300])


def worker_killed_mid_detection(log_dir: Path, *, batches: int = 24, plugins: int = 4, errors: int = 30,
                                noise: int = 300, slug: str = "kill-detect", settle: float = 120) -> tuple[Report, dict]:
    """Batches queued, a worker SIGKILLed after it finished a few (one is usually half-way in its
    transaction), a new worker and the sweeper finish the rest: every event counted once."""
    with peers() as p:
        world = make_world(slug, p.hook)
        env = worker_env(p)
        with web(log_dir) as base:
            _post_all(base, world, [make_batch(world, plugins=plugins, errors_per_plugin=errors, noise=noise,
                                               tag=f"b{i}") for i in range(batches)])
        with celery_worker(name=f"{slug}-victim", env=env, log_path=log_dir / f"{slug}-victim.log") as victim:
            wait_for(lambda: done_batches(world) >= 2, timeout=60, interval=0.05, what="the victim working batches")
            kill9(victim)
        done_at_kill = done_batches(world)
        t0 = time.monotonic()
        with celery_worker(name=f"{slug}-rescuer", env=env, log_path=log_dir / f"{slug}-rescuer.log"), \
                sweepers(log_dir):
            wait_settled(world, timeout=settle)
        recover = time.monotonic() - t0
    return _finish(world, p, "worker SIGKILL mid-detection", recover), {"done_at_kill": done_at_kill,
                                                                         "batches": batches}


def worker_killed_mid_delivery(log_dir: Path, *, plugins: int = 4, slow_requests: int = 3, slow_s: float = 2.0,
                               slug: str = "kill-deliver", settle: float = 120) -> tuple[Report, dict]:
    """A slow receiver; the worker is SIGKILLed while it waits for an answer; after the claim lease
    the sweeper hands the rows to a new worker, which sends them again with the same webhook-id."""
    def slow(n, path, body):
        if n <= slow_requests:
            time.sleep(slow_s)
        return 200, {}

    with peers(slow) as p:
        world = make_world(slug, p.hook, endpoints=("a", "b"))
        env = worker_env(p)
        with web(log_dir) as base, \
                celery_worker(name=f"{slug}-victim", env=env, log_path=log_dir / f"{slug}-victim.log") as victim:
            _post_all(base, world, [make_batch(world, plugins=plugins, errors_per_plugin=12, noise=20)])
            wait_for(lambda: len(p.hook.requests) >= 2, timeout=60, interval=0.05, what="sends under way")
            kill9(victim)
        in_flight = len(p.hook.requests)
        t0 = time.monotonic()
        with celery_worker(name=f"{slug}-rescuer", env=env, log_path=log_dir / f"{slug}-rescuer.log"), \
                sweepers(log_dir, lease=3):
            wait_settled(world, timeout=settle)
        recover = time.monotonic() - t0
    return _finish(world, p, "worker SIGKILL mid-delivery", recover), {"requests_at_kill": in_flight}


def redis_flushed(log_dir: Path, *, batches: int = 6, plugins: int = 6, slug: str = "redis-flush",
                  settle: float = 120) -> tuple[Report, dict]:
    """Detect doorbells and delivery doorbells queued in Redis, then FLUSHDB: the sweepers rebuild
    everything from PostgreSQL."""
    broker = redis_lib.Redis.from_url(settings.CELERY_BROKER_URL)
    half = plugins // 2
    with peers() as p:
        world = make_world(slug, p.hook, endpoints=("a", "b"))
        env = worker_env(p)
        with web(log_dir) as base:
            # Phase 1: a detect-only worker fires alerts; their delivery doorbells wait in Redis.
            with celery_worker(name=f"{slug}-detect", queues="detect", env=env,
                               log_path=log_dir / f"{slug}-detect.log"):
                _post_all(base, world, [make_batch(world, plugins=half, errors_per_plugin=12, noise=50, tag=f"a{i}")
                                        for i in range(batches)])
                wait_for(lambda: done_batches(world) == len(world.batches), timeout=settle, what="phase 1 detected")
            # Phase 2: more batches, no worker: their detect doorbells wait in Redis too.
            # (plugins >= half are new groups; the first ones grow while their alerts are active)
            _post_all(base, world, [make_batch(world, plugins=plugins, errors_per_plugin=12, noise=50, tag=f"b{i}")
                                    for i in range(batches)])
        queued = {q: broker.llen(q) for q in ("detect", "deliver")}
        broker.flushdb()
        t0 = time.monotonic()
        with celery_worker(name=f"{slug}-after", env=env, log_path=log_dir / f"{slug}-after.log"), \
                sweepers(log_dir):
            wait_settled(world, timeout=settle)
        recover = time.monotonic() - t0
    return _finish(world, p, "Redis FLUSHDB with work queued", recover), {"queued": queued}


def flaky_receiver(log_dir: Path, *, plugins: int = 8, slug: str = "flaky", settle: float = 150) -> tuple[Report, dict]:
    """One endpoint fails 30% at random, answers 429 + Retry-After, sometimes too late (timeout);
    another answers 410 Gone: the first ends DELIVERED, the second is disabled and its alerts go
    out by email and SMS."""
    script = flaky_script(timeout_every=11, timeout_sleep=1.6)
    with peers(script) as p:
        world = make_world(slug, p.hook, endpoints=("flaky", "gone"))
        env = worker_env(p, WEBHOOK_TIMEOUT_SECONDS="1")
        t0 = time.monotonic()
        with web(log_dir) as base, celery_worker(name=f"{slug}", env=env, concurrency=2,
                                                 log_path=log_dir / f"{slug}.log"), sweepers(log_dir, lease=10):
            # One batch: every alert exists (with a delivery to both endpoints) before the 410 arrives.
            _post_all(base, world, [make_batch(world, plugins=plugins, errors_per_plugin=12, noise=40)])
            wait_settled(world, timeout=settle)
        recover = time.monotonic() - t0
    gone = WebhookEndpoint.objects.get(pk=world.endpoint_ids[1])
    statuses = sorted({r.get("status") for r in p.hook.requests})
    return _finish(world, p, "receiver 30% 5xx + 429 + timeouts + 410", recover), {
        "gone_enabled": gone.enabled, "statuses": statuses, "requests": len(p.hook.requests),
        "gone_requests": sum(r["path"].endswith("/gone") for r in p.hook.requests), "endpoint_ids": world.endpoint_ids}


def two_workers_two_sweepers(log_dir: Path, *, plugins: int = 10, slug: str = "concurrent",
                             settle: float = 120) -> tuple[Report, dict]:
    """Two worker processes and two sweeper processes (standing for two beat processes) racing the
    doorbells for deliveries and for escalation: every message is sent exactly once, every alert
    escalates exactly once."""
    with peers() as p:
        world = make_world(slug, p.hook, endpoints=("a", "b"))
        env = worker_env(p)
        t0 = time.monotonic()
        with web(log_dir) as base, \
                celery_worker(name=f"{slug}-1", env=env, log_path=log_dir / f"{slug}-1.log"), \
                celery_worker(name=f"{slug}-2", env=env, log_path=log_dir / f"{slug}-2.log"), \
                sweepers(log_dir, count=2, interval=0.05, grace=0, lease=60, escalate=True):
            _post_all(base, world, [make_batch(world, plugins=plugins, errors_per_plugin=6, noise=10, tag=f"h{i}")
                                    for i in range(2)])
            wait_settled(world, timeout=settle)
            # Every alert due for escalation now: both sweepers see all of them at once.
            Alert.objects.filter(tenant=world.tenant).update(next_escalation_at=clock.now() - timedelta(seconds=1))
            wait_for(lambda: not Alert.objects.filter(tenant=world.tenant, escalation_level=0).exists(),
                     timeout=settle, what="every alert escalated")
            wait_settled(world, timeout=settle)
            time.sleep(1.0)  # a few more sweeper ticks: a double escalation would show now
            wait_settled(world, timeout=settle)
        recover = time.monotonic() - t0
    return _finish(world, p, "2 workers + 2 sweepers (claims, escalation)", recover, escalations=1,
                   allow_duplicates=False), {}


def database_outage(log_dir: Path, *, before: int = 3, during: int = 5, after: int = 3, slug: str = "pg-down",
                    settle: float = 120) -> tuple[Report, dict]:
    """The web process loses PostgreSQL (a TCP proxy cut): ingest answers 503 with Retry-After and
    stores nothing; when the database is back the next request is accepted and nothing is lost."""
    answers: list[tuple[int, str | None, dict]] = []
    with peers() as p:
        world = make_world(slug, p.hook)
        env = worker_env(p)
        batch = lambda tag: make_batch(world, plugins=2, errors_per_plugin=6, noise=10, tag=tag)  # noqa: E731
        with TcpProxy() as proxy, web(log_dir, env={"DATABASE_URL": proxied_database_url(proxy),
                                                    "DATABASE_CONN_MAX_AGE": "60"}) as base, requests.Session() as s:
            for i in range(before):
                assert post(base, world, batch(f"before{i}"), session=s).status_code == 202
            proxy.down()
            for i in range(during):
                r = post(base, world, batch(f"during{i}"), session=s)
                answers.append((r.status_code, r.headers.get("Retry-After"), r.json() if r.content else {}))
            stored_while_down = IngestBatch.objects.filter(tenant=world.tenant).count()
            proxy.up()
            t0 = time.monotonic()
            while True:
                r = post(base, world, batch("retry"), session=s)
                if r.status_code == 202:
                    break
                answers.append((r.status_code, r.headers.get("Retry-After"), r.json() if r.content else {}))
                assert time.monotonic() - t0 < 30, f"ingest did not recover: {r.status_code} {r.text[:200]}"
                time.sleep(0.2)
            recover = time.monotonic() - t0
            for i in range(after):
                assert post(base, world, batch(f"after{i}"), session=s).status_code == 202
        with celery_worker(name=slug, env=env, log_path=log_dir / f"{slug}.log"), sweepers(log_dir):
            wait_settled(world, timeout=settle)
    return _finish(world, p, "PostgreSQL unreachable from the web", recover), {
        "answers": answers, "stored_while_down": stored_while_down, "stored_before": before}


ALL = [worker_killed_mid_detection, worker_killed_mid_delivery, redis_flushed, flaky_receiver,
       two_workers_two_sweepers, database_outage]
