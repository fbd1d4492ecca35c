"""The fault scenarios, each driving the real stack and ending with the invariant report.

Every function takes a log directory and sizes (the tests pass small ones, ``bench/chaos.py``
bigger ones), uses its own tenant slug, stops every process it started (context managers), and
returns ``(Report, facts)``: the invariants' report (``recover_s`` filled) and scenario facts the
tests assert on (e.g. how many batches were done when the worker was killed).
"""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
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
            # Phase 1: a detect-only worker fires alerts; their delivery doorbells wait in Redis (it
            # leaves first attempts to deliver workers, as a detect pool without outbound access would).
            with celery_worker(name=f"{slug}-detect", queues="detect", env={**env, "DELIVERY_SEND_FROM_DETECT": "0"},
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


# --------------------------------------------------------------------------- issue 8, the last three


def receiver_down_then_back(log_dir: Path, *, plugins: int = 4, late_plugins: int = 2, down_attempts: int = 4,
                            slug: str = "hook-down", settle: float = 90) -> tuple[Report, dict]:
    """The receiver is stopped (connections refused) while alerts fire, for longer than 3 attempts:
    every delivery downgrades (email + SMS reach the local peers), alerts that fire while the
    endpoint is downgraded go to fallback at once; the endpoint, behind its breaker, refuses
    ``down_attempts`` probes more (every delivery refused at least once: the probes take the least
    tried first); then the receiver listens again on the same port: every delivery ends DELIVERED
    under its one webhook-id and the endpoint is restored."""
    from apps.delivery.models import Channel, Delivery

    with peers() as p:
        world = make_world(slug, p.hook)
        env = worker_env(p, DELIVERY_RETRY_SCHEDULE="1,1,1,2")
        p.hook.down()
        hooks = Delivery.objects.filter(tenant=world.tenant, channel=Channel.WEBHOOK)
        with web(log_dir) as base, celery_worker(name=slug, env=env, log_path=log_dir / f"{slug}.log"), \
                sweepers(log_dir, lease=10):
            _post_all(base, world, [make_batch(world, plugins=plugins, errors_per_plugin=12, noise=20, tag="early")])
            wait_for(lambda: WebhookEndpoint.objects.get(pk=world.endpoint_ids[0]).downgraded_at is not None,
                     timeout=settle, interval=0.1, what="the endpoint downgraded")
            # Fired while the endpoint is downgraded: straight to fallback.
            _post_all(base, world, [make_batch(world, plugins=late_plugins, errors_per_plugin=12, noise=20,
                                               first_plugin=plugins, tag="late")])
            n_alerts = plugins + late_plugins

            # Behind the breaker the deliveries are not each retried on their own schedule: the
            # endpoint is probed, one delivery at a time, so the outage is measured in its probes.
            streak = 3 + down_attempts  # DELIVERY_DOWNGRADE_AFTER_FAILURES (3), then the probes refused

            def all_fell_back() -> bool:
                rows = list(hooks.filter(event_type="alert.triggered"))
                fallbacks = Delivery.objects.filter(source_id__in=[d.pk for d in rows], state="DELIVERED")
                return (len(rows) == n_alerts and all(d.attempts >= 1 and d.downgraded_at for d in rows)
                        and fallbacks.count() == 2 * n_alerts
                        and WebhookEndpoint.objects.get(pk=world.endpoint_ids[0]).failure_streak >= streak)

            wait_for(all_fell_back, timeout=settle, interval=0.2, what=f"every delivery downgraded and refused, "
                                                                        f"{down_attempts} probes refused after the "
                                                                        "downgrade, fallbacks sent")
            during = {"requests": len(p.hook.requests), "emails": len(p.smtp.envelopes), "sms": len(p.sms.messages),
                      "endpoint": WebhookEndpoint.objects.values("failure_streak", "downgraded_at")
                      .get(pk=world.endpoint_ids[0]),
                      "refused_attempts": sorted(hooks.values_list("attempts", flat=True))}
            p.hook.up()
            t0 = time.monotonic()
            wait_settled(world, timeout=settle, what="every delivery delivered after the receiver came back")
            recover = time.monotonic() - t0
    ep = WebhookEndpoint.objects.get(pk=world.endpoint_ids[0])
    rows = list(hooks.filter(event_type="alert.triggered"))
    ok_ids = [r["headers"].get("webhook-id") for r in p.hook.requests if r.get("status") == 200]
    return _finish(world, p, "receiver down (refused), then back", recover, allow_duplicates=False), {
        "during": during, "after": {"failure_streak": ep.failure_streak, "downgraded_at": ep.downgraded_at},
        "states": sorted({d.state for d in rows}), "msg_ids": sorted(d.msg_id for d in rows),
        "ok_ids": sorted(ok_ids), "alerts": n_alerts,
        # created DOWNGRADED (the outbox saw the endpoint downgraded), not downgraded by a failed attempt
        "downgraded_at_once": sum(1 for d in rows if d.downgraded_at == d.created_at),
        "restored_audits": _audits(world, "webhook.restored")}


def _audits(world, action: str) -> int:
    from apps.audit.models import AuditEvent

    return AuditEvent.objects.filter(tenant_id=world.tenant.pk, action=action).count()


def _request_summary(reqs: list[dict]) -> dict:
    """{(type, path, status): requests} and {requests per webhook-id: ids}, for messages."""
    import orjson
    from collections import Counter

    kinds = Counter((orjson.loads(r["body"])["type"], r["path"], r.get("status")) for r in reqs)
    per_id = Counter(Counter(r["headers"].get("webhook-id") for r in reqs).values())
    return {"kinds": dict(kinds), "per_id": dict(per_id)}


def _step_clock(offset_file: Path, seconds: float, procs: list) -> None:
    """Step the application clock of every process started with the offset file, at one instant
    for all of them, as a host clock step would: freeze them (SIGSTOP, whole process groups),
    rewrite the file, wait out their once-a-second re-read, thaw them (SIGCONT). Stepping without
    the freeze lets processes disagree for up to a second, which is clock skew between hosts,
    not a step."""
    import os
    import signal

    for proc in procs:
        os.killpg(proc.pid, signal.SIGSTOP)
    try:
        tmp = offset_file.with_suffix(".tmp")
        tmp.write_text(f"{seconds}\n")
        tmp.replace(offset_file)
        time.sleep(1.2)
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGCONT)
    time.sleep(0.2)


def clock_steps(log_dir: Path, *, plugins: int = 4, late_plugins: int = 2, forward_h: float = 3.0,
                back_h: float = 1.0, quiet_s: float = 2.5, slug: str = "clock", settle: float = 90) -> tuple[Report, dict]:
    """Every process (web, worker, two sweepers that also escalate) reads the application clock
    through an offset file (``ALERTCENTER_CLOCK_OFFSET_FILE``; the system clock cannot be changed
    here). First attempts to the receiver fail, so deliveries wait for a retry 30 min later.

    * forward ``forward_h`` hours: both sweepers see every retry and every escalation due at once:
      each retry is sent once, each alert escalates once (its policy repeats every 5 min, so a
      catch-up would escalate it many times);
    * back to ``back_h`` hours behind the true time: nothing is re-sent or re-escalated; new events
      (stamped by a shipper on the same stepped clock) are counted, fire and are delivered;
    * clock corrected (offset 0): the alerts of the backward period escalate once, the others not.
    """
    from apps.alerts.models import EscalationPolicy
    from apps.delivery.models import Channel, Delivery

    offset_file = log_dir / f"{slug}-clock-offset"
    offset_file.write_text("0\n")
    phase = {"n": 0}

    def script(n, path, body):
        # Phase 0: the first request of each alert.triggered message fails (-> retry in 30 min).
        if phase["n"] == 0 and b'"alert.triggered"' in body:
            return 500, {}
        return 200, {}

    clock_env = {"ALERTCENTER_CLOCK_OFFSET_FILE": str(offset_file)}
    facts: dict = {}
    with peers(script) as p:
        world = make_world(slug, p.hook, endpoints=("a", "b"))
        EscalationPolicy.objects.create(tenant=world.tenant, severity="critical", repeat=20,
                                        steps=[{"after_minutes": 5, "channels": ["webhook"], "group": "operators"}])
        # Downgrade is not under test here (a failed first attempt per alert would trigger it at the default 3).
        env = worker_env(p, DELIVERY_RETRY_SCHEDULE="1800", DELIVERY_DOWNGRADE_AFTER_FAILURES=str(plugins + 10),
                         **clock_env)
        hooks = Delivery.objects.filter(tenant=world.tenant, channel=Channel.WEBHOOK)
        alerts = Alert.objects.filter(tenant=world.tenant)
        with web(log_dir, env=clock_env) as base, \
                celery_worker(name=slug, env=env, log_path=log_dir / f"{slug}.log") as worker, \
                sweepers(log_dir, count=2, interval=0.1, grace=0, lease=60, escalate=True, env=clock_env) as beat:
            procs = [worker, *beat]  # the web is idle at each step; its next request re-reads the file
            _post_all(base, world, [make_batch(world, plugins=plugins, errors_per_plugin=12, noise=20, tag="before")])
            wait_for(lambda: hooks.count() == 2 * plugins and not hooks.exclude(state="PENDING", attempts=1).exists(),
                     timeout=settle / 2, interval=0.1, what="every first attempt failed, retries 30 min away")
            facts["retry_in_s"] = round(min((d.next_attempt_at - clock.now()).total_seconds() for d in hooks))
            early_ids = set(hooks.values_list("msg_id", flat=True))
            phase["n"] = 1
            n_requests = len(p.hook.requests)

            _step_clock(offset_file, forward_h * 3600, procs)
            t0 = time.monotonic()
            wait_for(lambda: not alerts.filter(escalation_level=0).exists(), timeout=settle,
                     what="every alert escalated after the forward step")
            wait_settled(world, timeout=settle, what="retries and escalations delivered after the forward step")
            recover = time.monotonic() - t0  # from the step to every retry and escalation delivered
            time.sleep(quiet_s)  # many sweeper ticks on the stepped clock: a second escalation would show now
            facts["forward"] = {"levels": sorted(alerts.values_list("escalation_level", flat=True)),
                                "requests": len(p.hook.requests) - n_requests}
            facts["forward_detail"] = _request_summary(p.hook.requests[n_requests:])
            n_requests = len(p.hook.requests)

            _step_clock(offset_file, -back_h * 3600, procs)
            time.sleep(quiet_s)
            facts["back_quiet"] = {"levels": sorted(alerts.values_list("escalation_level", flat=True)),
                                   "requests": len(p.hook.requests) - n_requests}
            shipper_now = datetime.now(dt_timezone.utc) - timedelta(hours=back_h)
            _post_all(base, world, [make_batch(world, plugins=late_plugins, errors_per_plugin=12, noise=20,
                                               first_plugin=plugins, tag="after", ts=shipper_now)])
            wait_for(lambda: alerts.count() == plugins + late_plugins, timeout=settle, what="late alerts fired")
            wait_settled(world, timeout=settle, what="late alerts delivered on the stepped-back clock")
            facts["back"] = {"levels": sorted(alerts.values_list("escalation_level", flat=True)),
                             "requests": len(p.hook.requests) - n_requests}

            _step_clock(offset_file, 0, procs)
            wait_for(lambda: not alerts.filter(escalation_level=0).exists(), timeout=settle,
                     what="the backward period's alerts escalated once the clock is corrected")
            wait_settled(world, timeout=settle)
            time.sleep(quiet_s)
            wait_settled(world, timeout=settle)
    per_id = {}
    for r in p.hook.requests:
        per_id.setdefault(r["headers"].get("webhook-id"), []).append(r.get("status"))
    facts.update(levels=sorted(alerts.values_list("escalation_level", flat=True)), alerts=alerts.count(),
                 escalated_audits=_audits(world, "alert.escalated"),
                 # answers per webhook-id: the retried messages (500 then 200), then all the others
                 retried=sorted({tuple(per_id.get(i, ())) for i in early_ids}),
                 others=sorted({tuple(v) for k, v in per_id.items() if k not in early_ids}))
    return _finish(world, p, f"clock steps +{forward_h:g} h, -{forward_h + back_h:g} h, +{back_h:g} h",
                   recover, escalations=1, allow_duplicates=False), facts


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def burst(log_dir: Path, *, normal_eps: int = 200, factor: int = 10, burst_s: float = 7.0, calm_s: float = 3.0,
          batch_events: int = 100, senders: int = 4, max_pending: int = 300, quota_factor: int = 3,
          plugins: int = 4, slug: str = "burst", settle: float = 120) -> tuple[Report, dict]:
    """``factor`` x the normal rate for ``burst_s`` against the real gunicorn and one worker, the web
    started with a low INGEST_MAX_PENDING_EVENTS and a tenant quota of ``quota_factor`` x normal.
    Shippers honour Retry-After and resend the same batch. The API must shed with 429 + Retry-After
    (codes backlogged / rate_limited), never 5xx or time out; everything is accepted in the end and
    counted once; detection latency (batch received -> processed) per phase is reported.

    The quota's fixed windows are 10 s, so a burst of at most 10 s spans at most two of them and
    one gets at least half of it: with ``factor * burst_s / 2 > quota_factor * 10`` the quota is
    exceeded whatever the timing (defaults: 7,000 offered events > 6,000 per window), while the
    normal rate stays under it. The backlog limit sheds too when detection falls behind."""
    import orjson

    per_batch_errors = 2  # per plugin: 8 ERROR lines in a batch of 100, the rest INFO
    noise = batch_events - plugins * per_batch_errors
    log: list[dict] = []
    batch_phase: dict[int, str] = {}
    lock = threading.Lock()
    deadline = time.monotonic() + settle

    with peers() as p:
        world = make_world(slug, p.hook)
        env = worker_env(p)
        web_env = {"INGEST_MAX_PENDING_EVENTS": str(max_pending),
                   "INGEST_TENANT_EVENTS_PER_SECOND": str(normal_eps * quota_factor)}
        with web(log_dir, env=web_env) as base, celery_worker(name=slug, env=env, log_path=log_dir / f"{slug}.log"), \
                sweepers(log_dir, lease=10):
            url = f"{base}/api/v1/logs"
            headers = {"Authorization": f"Bearer {world.token}", "Content-Type": "application/json"}

            def shipper(phase: str, n: int, per_s: float, start: float, idx: int) -> None:
                with requests.Session() as s:
                    for i in range(n):
                        wait = start + i / per_s - time.monotonic()
                        if wait > 0:
                            time.sleep(wait)
                        events = make_batch(world, plugins=plugins, errors_per_plugin=per_batch_errors, noise=noise,
                                            tag=f"{phase}-{idx}-{i}")
                        data = orjson.dumps(events)
                        while time.monotonic() < deadline:
                            t = time.monotonic()
                            entry = {"phase": phase, "at": t}
                            try:
                                resp = s.post(url, data=data, headers=headers, timeout=10)
                            except requests.RequestException as exc:
                                entry.update(status=None, error=repr(exc)[:200])
                                with lock:
                                    log.append(entry)
                                time.sleep(1)
                                continue
                            world.record(events, resp)
                            retry_after = resp.headers.get("Retry-After")
                            entry.update(status=resp.status_code, retry_after=retry_after, s=time.monotonic() - t)
                            if resp.status_code == 202:
                                with lock:
                                    log.append(entry)
                                    batch_phase[resp.json()["batch_id"]] = phase
                                break
                            body = resp.json() if resp.content else {}
                            entry["code"] = (body.get("error") or {}).get("code")
                            with lock:
                                log.append(entry)
                            time.sleep(int(retry_after) if retry_after and retry_after.isdigit() else 1)

            generated = {"events": 0}

            def run(phase: str, count: int, eps: float, duration: float) -> None:
                n = max(1, round(duration * eps / batch_events / count))
                generated["events"] += n * count * batch_events
                start = time.monotonic()
                threads = [threading.Thread(target=shipper, args=(phase, n, eps / batch_events / count, start, k))
                           for k in range(count)]
                for th in threads:
                    th.start()
                for th in threads:
                    th.join()

            # Warm-up (INFO lines only): the worker is up and connected before the baseline is measured.
            _post_all(base, world, [make_batch(world, plugins=1, errors_per_plugin=0, noise=10, tag="warm-up")])
            wait_for(lambda: done_batches(world) == 1, timeout=30, interval=0.05, what="the worker up")
            run("before", 1, normal_eps, calm_s)
            wait_for(lambda: done_batches(world) == len(world.batches), timeout=30, what="the calm phase detected")
            burst_start = time.monotonic()
            run("burst", senders, normal_eps * factor, burst_s)
            drained = time.monotonic()
            burst_end_wall = clock.now() - timedelta(seconds=max(0.0, drained - burst_start - burst_s))
            wait_for(lambda: done_batches(world) == len(world.batches), timeout=max(10, deadline - time.monotonic()),
                     interval=0.1, what="the burst's backlog detected")
            run("after", 1, normal_eps, calm_s)  # back at the normal rate once the backlog is gone
            wait_settled(world, timeout=max(10, deadline - time.monotonic()))
    batches = IngestBatch.objects.filter(pk__in=list(batch_phase)).values_list("pk", "received_at", "processed_at")
    latency: dict[str, list[float]] = {}
    last_burst_done = None
    for pk, received, processed in batches:
        latency.setdefault(batch_phase[pk], []).append((processed - received).total_seconds() * 1000)
        if batch_phase[pk] == "burst":
            last_burst_done = max(last_burst_done or processed, processed)
    recover = max(0.0, (last_burst_done - burst_end_wall).total_seconds()) if last_burst_done else 0.0
    answers: dict[str, dict] = {}
    for e in log:
        key = str(e.get("status")) + (f" {e['code']}" if e.get("code") else "")
        answers.setdefault(e["phase"], {}).setdefault(key, 0)
        answers[e["phase"]][key] += 1
    facts = {
        "answers": answers, "generated": generated["events"] + 10,
        "refusals": [e for e in log if e.get("status") != 202],
        "offered_eps": {"normal": normal_eps, "burst": normal_eps * factor},
        "burst_s": burst_s, "drain_s": round(drained - burst_start - burst_s, 1),
        "latency_ms": {ph: {"n": len(v), "p50": round(_pct(v, 0.5)), "p95": round(_pct(v, 0.95)), "max": round(max(v))}
                       for ph, v in latency.items()},
    }
    return _finish(world, p, f"burst {factor}x ({normal_eps * factor} ev/s) for {burst_s:g} s", recover), facts


ALL += [receiver_down_then_back, clock_steps, burst]
