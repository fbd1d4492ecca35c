"""Console pages' server time and query count with 100,000 alerts (with timelines) in the database.

    .venv/bin/python bench/console.py [--alerts 100000] [--requests 40] [--keep]

Creates its own PostgreSQL database ``ac_bench_console`` (server from ``BENCH_PG``, default
``postgres://postgres@127.0.0.1:5432``; name from ``--db``), migrates it, fills it with
``bulk_create`` (alerts over 30 days, every one with its timeline, audit events, silences, one
alert with deliveries and evidence lines) and drops it afterwards unless ``--keep``. Then, for
each console page, it times ``--requests`` GETs through the Django test client (the whole
middleware stack, view and template, no network) as a signed-in operator, and counts the SQL
statements of one request (``CaptureQueriesContext``). The baseline, measured in the same run,
is a minimal signed-in page through the same stack that runs ``SELECT 1``.
Target: every page's p95 under 200 ms.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import types
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET_MS = 200.0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--alerts", type=int, default=100_000, help="rows in the alert table (default 100000)")
    p.add_argument("--requests", type=int, default=40, help="timed requests per page (default 40)")
    p.add_argument("--db", default=os.environ.get("BENCH_DB", "ac_bench_console"), help="database name")
    p.add_argument("--keep", action="store_true", help="keep the database afterwards (and reuse it with --reuse)")
    p.add_argument("--reuse", action="store_true", help="use an existing filled database from --keep")
    p.add_argument("--slow", action="store_true", help="print each page's slowest SQL statement")
    return p.parse_args()


def admin_url(base: str) -> str:
    return urlunsplit(urlsplit(base)._replace(scheme="postgresql", path="/postgres"))


def fresh_database(base: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url(base), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(base: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url(base), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main() -> int:
    args = parse_args()
    base = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432").rstrip("/")
    if not base.startswith(("postgres://", "postgresql://")):
        print("BENCH_PG must be a PostgreSQL server URL, e.g. postgres://postgres@127.0.0.1:5432")
        return 2
    base = urlunsplit(urlsplit(base)._replace(path=""))
    if not args.reuse:
        fresh_database(base, args.db)
    os.environ["DATABASE_URL"] = f"{base}/{args.db}"
    # Production-like settings: no DEBUG (cached templates), no Redis needed for page reads.
    os.environ.update({"DEBUG": "0", "LOG_LEVEL": "WARNING", "LOG_FORMAT": "text", "REDIS_URL": "",
                       "CELERY_BROKER_URL": "", "CACHE_URL": ""})
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
    os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alertcenter.settings")
    import warnings

    import django

    warnings.filterwarnings("ignore", message="No directory at")  # whitenoise: no collectstatic needed here
    django.setup()
    from django.core.management import call_command

    try:
        if not args.reuse:
            call_command("migrate", verbosity=0)
            fill(args)
        return run(args)
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            drop_database(base, args.db)


# --- data ---------------------------------------------------------------------------------------

TENANTS = 5
PLUGINS_PER_TENANT = 20
RULES = 50
DAYS = 30
SEVERITIES = ("info", "warning", "warning", "critical", "critical", "emergency")
WORDS = ("timeout", "error burst", "connection refused", "disk full", "login failures", "5xx spike", "OOM killed",
         "slow queries", "certificate expiring", "queue backlog")


def fill(args) -> None:
    from django.contrib.auth.models import Group, User
    from django.db import connection

    from apps.alerts.models import Alert, AlertState, Silence, TimelineEntry
    from apps.audit.models import AuditEvent
    from apps.core import clock
    from apps.delivery.models import Delivery, DeliveryAttempt, WebhookEndpoint
    from apps.ingest.models import EventRecord
    from apps.tenants.models import Plugin, Tenant

    random.seed(7)
    now = clock.now()
    print(f"PostgreSQL {connection.pg_version // 10000}: inserting {args.alerts:,} alerts with timelines ...",
          flush=True)
    started = time.perf_counter()
    operator = User.objects.create_user("bench-operator", password="x", is_staff=True)
    operator.groups.add(Group.objects.get(name="operators"))
    others = [User.objects.create_user(f"oncall-{i}", password="x", is_staff=True) for i in range(5)]
    tenants = [Tenant.objects.create(slug=f"tenant-{t}", name=f"Tenant {t}") for t in range(TENANTS)]
    plugins = [Plugin.objects.create(tenant=t, slug=f"plugin-{p}") for t in tenants for p in range(PLUGINS_PER_TENANT)]

    span = DAYS * 86400
    alerts_written = 0
    timeline_rows = 0
    batch: list[Alert] = []

    def flush_batch() -> None:
        nonlocal timeline_rows
        created = Alert.objects.bulk_create(batch)
        entries = []
        for a in created:
            entries.append(TimelineEntry(alert_id=a.pk, at=a.created_at, kind="created", actor_label="system",
                                         message=a.summary))
            if a.count > 1:
                entries.append(TimelineEntry(alert_id=a.pk, at=a.created_at + timedelta(minutes=1), kind="occurrence",
                                             actor_label="system", message=f"+{a.count - 1} occurrences"))
            if a.acknowledged_at:
                entries.append(TimelineEntry(alert_id=a.pk, at=a.acknowledged_at, kind="acknowledged",
                                             actor_label=a.acknowledged_by))
            if a.resolved_at:
                entries.append(TimelineEntry(alert_id=a.pk, at=a.resolved_at, kind="resolved",
                                             actor_label=a.resolved_by or "system"))
        TimelineEntry.objects.bulk_create(entries, batch_size=5000)
        timeline_rows += len(entries)
        batch.clear()

    for i in range(args.alerts):
        plugin = plugins[i % len(plugins)]
        created_at = now - timedelta(seconds=span * (args.alerts - i) / args.alerts)
        # ~90% historical (RESOLVED), the rest active: the mix a busy production table has.
        roll = random.random()
        state = (AlertState.OPEN if roll < 0.05 else AlertState.ACKNOWLEDGED if roll < 0.07 else
                 AlertState.ESCALATED if roll < 0.08 else AlertState.SUPPRESSED if roll < 0.10 else AlertState.RESOLVED)
        acked = state in (AlertState.ACKNOWLEDGED,) or (state == AlertState.RESOLVED and roll < 0.7)
        who = random.choice(others)
        word = WORDS[i % len(WORDS)]
        count = random.randint(1, 200)
        batch.append(Alert(
            tenant_id=plugin.tenant_id, plugin=plugin, rule_key=f"rule-{i % RULES}", rule_version=1, category="error",
            fingerprint=f"bench-{i:08d}", state=state, severity=SEVERITIES[i % len(SEVERITIES)],
            title=f"{plugin.slug}: {word} #{i}", summary=f"{count} matching events in 5m ({word})",
            recommended_action="Check the plugin's last deploy.", count=count, window_seconds=300,
            first_seen=created_at - timedelta(minutes=5), last_seen=created_at + timedelta(minutes=2),
            created_at=created_at, updated_at=created_at, trace_ids=[f"tr-{i:08x}"],
            escalation_level=1 if state == AlertState.ESCALATED else 0,
            assignee=who if roll < 0.04 else None,
            acknowledged_at=created_at + timedelta(minutes=3) if acked else None,
            acknowledged_by=who.username if acked else "",
            resolved_at=created_at + timedelta(minutes=40) if state == AlertState.RESOLVED else None,
            resolved_by=who.username if state == AlertState.RESOLVED and acked else "",
            suppressed_until=now + timedelta(hours=2) if state == AlertState.SUPPRESSED else None,
            suppressed_reason="maintenance" if state == AlertState.SUPPRESSED else ""))
        if len(batch) == 5000:
            flush_batch()
            alerts_written = i + 1
            print(f"\r  {alerts_written:,} alerts", end="", flush=True)
    if batch:
        flush_batch()
    print(f"\r  {args.alerts:,} alerts, {timeline_rows:,} timeline entries", flush=True)

    # Audit trail: one event per acknowledgement/resolution the data implies, capped at 100k.
    audit = []
    for a in Alert.objects.filter(acknowledged_at__isnull=False).values("pk", "tenant_id", "acknowledged_at",
                                                                         "acknowledged_by")[:100_000]:
        audit.append(AuditEvent(at=a["acknowledged_at"], actor_type="user", actor_label=a["acknowledged_by"],
                                action="alert.acknowledged", target_type="alerts.alert", target_id=str(a["pk"]),
                                tenant_id=a["tenant_id"], data={"note": ""}))
    AuditEvent.objects.bulk_create(audit, batch_size=5000)

    for i in range(60):  # silences: a few active, most expired
        starts = now - timedelta(days=i / 2)
        Silence.objects.create(tenant=tenants[i % TENANTS], matchers={"plugin": f"plugin-{i % PLUGINS_PER_TENANT}"},
                               starts_at=starts, ends_at=starts + timedelta(hours=2 if i > 5 else 48),
                               reason=f"maintenance window {i}", created_by="bench-operator")

    # The detail page's alert: deliveries with attempts, and evidence lines among other events.
    detail = Alert.objects.filter(state=AlertState.OPEN).order_by("-created_at").first()
    endpoint = WebhookEndpoint.objects.create(tenant_id=detail.tenant_id, url="https://hooks.example/alerts",
                                              secret_encrypted="x", event_types=["alert.triggered"])
    for n in range(3):
        delivery = Delivery.objects.create(
            tenant_id=detail.tenant_id, alert=detail, endpoint=endpoint, event_type="alert.triggered",
            msg_id=f"msg_bench_{n}", body=b"{}", state="DELIVERED", attempts=3, created_at=detail.created_at,
            expires_at=now + timedelta(days=1), delivered_at=now, finished_at=now)
        DeliveryAttempt.objects.bulk_create([DeliveryAttempt(
            delivery=delivery, number=k + 1, channel="webhook", started_at=detail.created_at + timedelta(seconds=k),
            latency_ms=120, status_code=500 if k < 2 else 200, success=k == 2, error="" if k == 2 else "HTTP 500")
            for k in range(3)])
    events = []
    for k in range(50_000):  # the last day's stored events over every plugin; ~every 10th matches a rule
        plugin = plugins[k % len(plugins)]
        ts = now - timedelta(seconds=86400 * k / 50_000)
        events.append(EventRecord(tenant_id=plugin.tenant_id, plugin=plugin, ts=ts, level="ERROR", level_no=40,
                                  message=f"upstream timeout {k}", trace_id=f"tr-ev-{k}", received_at=ts,
                                  rule_keys=[f"rule-{k % RULES}"] if k % 10 == 0 else []))
    for k in range(80):  # the detail alert's own matches
        ts = detail.first_seen + timedelta(seconds=k * 5)
        events.append(EventRecord(tenant_id=detail.tenant_id, plugin_id=detail.plugin_id, ts=ts, level="ERROR",
                                  level_no=40, message=f"payment failed {k} token=[MASKED:token]",
                                  trace_id=detail.trace_ids[0], received_at=ts, rule_keys=[detail.rule_key]))
    EventRecord.objects.bulk_create(events, batch_size=5000)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")  # what autovacuum does to a table that has settled
    print(f"  filled in {time.perf_counter() - started:.1f}s: {AuditEvent.objects.count():,} audit events, "
          f"{EventRecord.objects.count():,} event records\n", flush=True)


# --- measurement --------------------------------------------------------------------------------

def bench_urlconf():
    """The project's URLs plus the baseline page: signed in (console_view), ``SELECT 1``, tiny body."""
    from django.db import connection
    from django.http import HttpResponse
    from django.urls import path

    from alertcenter import urls as project_urls
    from apps.console.access import console_view

    @console_view
    def baseline(request):
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return HttpResponse(f"ok {request.viewer.role}")

    module = types.ModuleType("bench_console_urls")
    module.urlpatterns = [path("bench/baseline", baseline), *project_urls.urlpatterns]
    module.handler404 = getattr(project_urls, "handler404", None)
    return module


def run(args) -> int:
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client, override_settings
    from django.test.utils import CaptureQueriesContext

    from apps.alerts.models import Alert, AlertState

    total = Alert.objects.count()
    detail = Alert.objects.filter(state=AlertState.OPEN, deliveries__isnull=False).first() or \
        Alert.objects.filter(state=AlertState.OPEN).first()
    resolved = Alert.objects.filter(state=AlertState.RESOLVED).order_by("created_at").first()
    pages = [
        ("baseline (SELECT 1 page)", "/bench/baseline"),
        ("alert list (active, default)", "/"),
        ("alert list rows (live refresh)", "/alerts/rows"),
        ("alert list all states", "/?state=all"),
        ("list filtered", "/?state=all&severity=critical&tenant=tenant-2&plugin=plugin-3&range=7d"),
        ("list rule + assignee filter", "/?state=all&rule=rule-7&assignee=oncall-1"),
        ("list search (10% match)", "/?state=all&q=refused"),
        ("list search (no match)", "/?state=all&q=xyzzy"),
        ("list sorted by severity", "/?sort=severity"),
        ("list resolved, page 100", "/?state=RESOLVED&page=100"),
        ("alert detail (deliveries, evidence)", f"/alerts/{detail.pk}"),
        ("alert detail (old, resolved)", f"/alerts/{resolved.pk}"),
        ("dashboard", "/dashboard"),
        ("audit", "/audit"),
        ("audit filtered", "/audit?action=alert.acknowledged&tenant=tenant-1"),
        ("silences", "/silences"),
        ("silences expired", "/silences?status=expired"),
    ]
    client = Client()
    client.force_login(User.objects.get(username="bench-operator"))
    rows = []
    with override_settings(ROOT_URLCONF=bench_urlconf()):
        for name, url in pages:  # warm up: templates compiled, connection and caches ready
            for _ in range(3):
                resp = client.get(url)
                assert resp.status_code == 200, (url, resp.status_code)
        for name, url in pages:
            samples = []
            for _ in range(args.requests):
                start = time.perf_counter()
                resp = client.get(url)
                samples.append((time.perf_counter() - start) * 1000)
                assert resp.status_code == 200
            with CaptureQueriesContext(connection) as captured:
                client.get(url)
            slowest = max(captured.captured_queries, key=lambda q: float(q["time"]), default=None)
            rows.append((name, url, statistics.median(samples), pct(samples, 95), len(captured.captured_queries),
                         sum(float(q["time"]) for q in captured.captured_queries) * 1000, slowest))

    base_p50 = rows[0][2]
    print(f"{args.requests} requests per page as a signed-in operator, {total:,} alerts in the table:\n")
    print(f"| {'page':<36} | {'p50 ms':>7} | {'p95 ms':>7} | {'queries':>7} | {'SQL ms':>6} | {'x baseline':>10} |")
    print(f"|{'-' * 38}|{'-' * 8}:|{'-' * 8}:|{'-' * 8}:|{'-' * 7}:|{'-' * 11}:|")
    for name, url, p50, p95, queries, sql_ms, _ in rows:
        print(f"| {name:<36} | {p50:7.1f} | {p95:7.1f} | {queries:7d} | {sql_ms:6.1f} | {p50 / base_p50:10.1f} |")
    if args.slow:
        print()
        for name, url, *_, slowest in rows[1:]:
            if slowest:
                print(f"{name} ({url}): slowest {float(slowest['time']) * 1000:.1f} ms\n  {slowest['sql'][:600]}\n")
    worst = max(rows[1:], key=lambda r: r[3])
    ok = worst[3] < TARGET_MS
    print(f"\n{'PASS' if ok else 'FAIL'}: slowest page {worst[0]!r} p95 {worst[3]:.1f} ms (target < {TARGET_MS:.0f} ms)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
