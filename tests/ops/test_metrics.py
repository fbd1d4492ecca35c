"""/metrics in one process: exact values from rows, counters that survive retention, the
exposition accepted by promtool, optional bearer token."""
from __future__ import annotations

import shutil
import subprocess
from datetime import timedelta

import pytest
from django.test import Client

from apps.core import clock
from apps.core.models import WorkerHeartbeat
from apps.ops.retention import purge_expired

from .factories import make_alert, make_batch, make_delivery, timeline
from .support import parse, product, value

# both_databases: the whole scrape again on a real SQLite file (tests/test_fastpaths_on_sqlite.py),
# the embedded stack's path through apps.ops.fastpath.
pytestmark = [pytest.mark.django_db, pytest.mark.both_databases]


def scrape(**headers) -> dict:
    response = Client().get("/metrics", **headers)
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/plain; version=")
    return parse(response.content.decode())


@pytest.fixture
def traffic(tenant, other_tenant):
    """A known set of rows; every expected figure below is counted by hand from it."""
    now = clock.now()
    make_batch(tenant, accepted=10, rejected=2)
    make_batch(tenant, accepted=5, status="PENDING")
    make_batch(other_tenant, accepted=7, rejected=1)
    a1 = make_alert(tenant, latency=0.4)            # log-to-alert 0.4 s
    a2 = make_alert(tenant, latency=5.0, severity="warning")  # exactly on a bound: le is inclusive
    a3 = make_alert(other_tenant, latency=100.0)
    make_alert(other_tenant)                        # no source line: not in the histogram
    make_delivery(a1, attempts=[True], delivered_after=0.2)
    make_delivery(a2, attempts=[False, False, True], delivered_after=40.0, downgraded_at=now)
    make_delivery(a3, attempts=[False], state="PENDING", next_attempt_at=now - timedelta(minutes=10))
    make_delivery(a3, channel="email", attempts=[True], delivered_after=7.0)  # fallback: first success 7 s
    for alert, kind in ((a1, "acknowledged"), (a2, "acknowledged"), (a2, "escalated")):
        timeline(alert, kind)
    WorkerHeartbeat.objects.create(hostname="w1", last_seen=now - timedelta(seconds=5))


def test_deliveries_parked_behind_a_breaker_are_shown_apart_from_the_rest_of_the_backlog(tenant, other_tenant):
    """A dead receiver's backlog waits parked for its breaker's probe: counted as pending (not
    finished) and again on its own gauge, so an alert on a pipeline that falls behind can leave the
    tenants' dead receivers out. Every tenant with a pending series has a parked one, 0 or not:
    PromQL's ``pending - parked`` answers only where both exist."""
    now = clock.now()
    mine, theirs = make_alert(tenant), make_alert(other_tenant)
    for _ in range(3):
        make_delivery(mine, state="DOWNGRADED", downgraded_at=now, next_attempt_at=None)  # parked
    make_delivery(mine, state="DOWNGRADED", downgraded_at=now, next_attempt_at=now)  # a retry due
    make_delivery(mine, state="PENDING", next_attempt_at=now)
    make_delivery(theirs, state="SENDING", next_attempt_at=None)  # a probe in flight: not parked
    make_delivery(theirs, state="DELIVERED")
    m = scrape()
    assert value(m, "monitoring_deliveries_pending", tenant="acme") == 5
    assert value(m, "monitoring_deliveries_parked", tenant="acme") == 3
    assert value(m, "monitoring_deliveries_pending", tenant="globex") == 1
    assert value(m, "monitoring_deliveries_parked", tenant="globex") == 0


def test_exact_values_from_rows(traffic, settings):
    settings.WATCHDOG_DELIVERY_OVERDUE_SECONDS = 300
    m = scrape()
    assert value(m, "monitoring_metrics_collect_success") == 1
    assert value(m, "monitoring_ingest_events_accepted_total", tenant="acme") == 15
    assert value(m, "monitoring_ingest_events_accepted_total", tenant="globex") == 7
    assert value(m, "monitoring_ingest_events_rejected_total", tenant="acme") == 2
    assert value(m, "monitoring_ingest_batches_pending") == 1
    assert value(m, "monitoring_webhook_retry_total") == 2
    assert value(m, "monitoring_webhook_attempts_total", result="success") == 2
    assert value(m, "monitoring_webhook_attempts_total", result="failure") == 3
    assert value(m, "monitoring_alert_downgrade_total") == 1
    assert value(m, "monitoring_alert_confirmed_total") == 2
    assert value(m, "monitoring_alert_escalations_total") == 1
    assert value(m, "monitoring_alerts_created_total", severity="critical") == 3
    assert value(m, "monitoring_alerts_created_total", severity="warning") == 1
    # first attempts in 15 min: a1 ok, a2 failed, a3 failed -> 1/3; notifications delivered: 2 of 3
    assert value(m, "monitoring_webhook_delivery_success_rate", window="15m", kind="initial") == pytest.approx(1 / 3)
    assert value(m, "monitoring_webhook_delivery_sample_size", window="15m", kind="initial") == 3
    assert value(m, "monitoring_webhook_delivery_success_rate", window="24h", kind="cumulative") == pytest.approx(2 / 3)
    assert value(m, "monitoring_deliveries_pending", tenant="globex") == 1
    assert value(m, "monitoring_deliveries_overdue") == 1
    assert 4 <= value(m, "monitoring_worker_heartbeat_age_seconds") < 60
    h = "monitoring_log_to_alert_latency_seconds"
    assert value(m, f"{h}_count") == 3 and value(m, f"{h}_sum") == pytest.approx(105.4)
    assert value(m, f"{h}_bucket", le="0.25") == 0 and value(m, f"{h}_bucket", le="0.5") == 1
    assert value(m, f"{h}_bucket", le="2.0") == 1 and value(m, f"{h}_bucket", le="5.0") == 2
    assert value(m, f"{h}_bucket", le="60.0") == 2 and value(m, f"{h}_bucket", le="120.0") == 3
    assert value(m, f"{h}_bucket", le="900.0") == 3 and value(m, f"{h}_bucket", le="+Inf") == 3
    h = "monitoring_alert_to_delivery_latency_seconds"
    assert value(m, f"{h}_count") == 3 and value(m, f"{h}_sum") == pytest.approx(47.2)
    assert value(m, f"{h}_bucket", le="0.25") == 1 and value(m, f"{h}_bucket", le="10.0") == 2


def test_request_metrics_still_served(traffic):
    Client().get("/api/v1/health")
    m = scrape()
    assert any(name.startswith("django_http_requests_total_by_view_transport_method") for name, _ in m)


def test_counters_do_not_go_down_when_retention_deletes_batches(traffic, tenant):
    make_batch(tenant, accepted=100, rejected=3, age=timedelta(days=30))
    before = product(scrape())
    report = purge_expired(chunk_size=1)
    assert report.removed["ingest_ingestbatch"] == 1
    after = product(scrape())
    assert after == before
    assert value(after, "monitoring_ingest_events_accepted_total", tenant="acme") == 115


def test_tenant_label_collapses_above_the_limit(traffic, settings):
    settings.METRICS_TENANT_LABEL_LIMIT = 1
    m = scrape()
    assert value(m, "monitoring_ingest_events_accepted_total", tenant="_all") == 22
    assert not any(dict(labels).get("tenant") in ("acme", "globex") for _, labels in m)


def test_database_failure_is_reported_not_raised(traffic, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("database gone")

    monkeypatch.setattr("apps.ops.figures.ingest_event_totals", boom)
    m = scrape()
    assert value(m, "monitoring_metrics_collect_success") == 0
    assert not any(name.startswith("monitoring_ingest") for name, _ in m)


def test_bearer_token(settings, traffic):
    settings.METRICS_BEARER_TOKEN = "s3cret"
    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert scrape(HTTP_AUTHORIZATION="Bearer s3cret")


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool missing: .ci/run installs Debian's prometheus")
def test_promtool_accepts_the_exposition(traffic, tmp_path):
    Client().get("/api/v1/health")
    body = Client().get("/metrics").content
    result = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


