"""The acceptance test of issue 7: traffic through a real gunicorn (2 workers) processed by two
real Celery worker processes, /metrics scraped from the web process several times: identical,
exact values; request metrics summed across gunicorn workers; promtool accepts the scrape; log
lines are JSON with their extra fields."""
from __future__ import annotations

import shutil
import subprocess
from datetime import datetime, timezone
from ipaddress import ip_network
from pathlib import Path

import orjson
import pytest
import requests
from django.conf import settings
from django.test import override_settings

from apps.alerts.models import Alert
from apps.delivery.models import Delivery
from apps.delivery.services import create_endpoint
from apps.ingest.models import IngestBatch
from apps.rules import engine
from apps.rules.services import pack_import
from apps.tenants.models import Plugin
from tests.delivery.peers import Hook, peer_env
from tests.delivery.worker_support import sweeper
from tests.support.processes import celery_worker, wait_for

from .support import gunicorn, parse, product, value

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

PLUGINS = ("checkout", "search", "billing", "auth")
POSTS = 20


def event(level: str, plugin: str, message: str = "boom") -> dict:
    return {"ts": datetime.now(timezone.utc).isoformat(), "level": level, "message": message, "tenant_id": "acme",
            "plugin_id": plugin}


@pytest.fixture
def rules(db):
    engine.reset_cache()
    pack_import(text=(Path(settings.BASE_DIR) / "fixtures/log_rules/default.yaml").read_text(), actor="test",
                source="pack:default")
    yield
    engine.reset_cache()


def test_metrics_exact_across_two_workers_and_two_web_processes(tenant, rules, make_token, clean_redis, tmp_path):
    for slug in PLUGINS:
        Plugin.objects.create(tenant=tenant, slug=slug)
    token = make_token(tenant, "logs:write")
    env = peer_env(DELIVERY_RETRY_SCHEDULE="1,1,1", LOG_FORMAT="json")
    # The receiver refuses its first request once: one retry, found by the sweeper.
    with Hook(lambda n, p, b: (500 if n == 1 else 200, {})) as hook, \
            override_settings(WEBHOOK_ALLOWED_NETWORKS=[ip_network("127.0.0.0/8")]), \
            celery_worker(name="w1", env=env, log_path=tmp_path / "w1.log"), \
            celery_worker(name="w2", env=env, log_path=tmp_path / "w2.log"), \
            gunicorn(tmp_path) as web, sweeper():
        create_endpoint(tenant=tenant, url=hook.url, event_types=["alert.triggered"])
        from apps.core.models import WorkerHeartbeat
        wait_for(lambda: WorkerHeartbeat.objects.count() == 2, timeout=60, what="both workers ready")
        for i in range(POSTS):
            body = [event("FATAL", PLUGINS[i % len(PLUGINS)]), event("INFO", "checkout"), {"level": "ERROR"}]
            r = requests.post(f"{web}/api/v1/logs", data=orjson.dumps(body), timeout=10,
                              headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            assert r.status_code == 202, r.text
            assert len(r.json()["rejected"]) == 1
        wait_for(lambda: IngestBatch.objects.filter(status="DONE").count() == POSTS, timeout=90,
                 what="every batch detected")
        wait_for(lambda: Delivery.objects.filter(state="DELIVERED").count() == len(PLUGINS), timeout=90,
                 what="every alert delivered")
        scrapes = [requests.get(f"{web}/metrics", timeout=10) for _ in range(6)]
        time_scrape = scrapes[-1].text

    # Both worker processes did part of the detection.
    for log in ("w1.log", "w2.log"):
        assert b"detect: batch done" in (tmp_path / log).read_bytes(), f"{log} processed no batch"

    samples = [parse(s.text) for s in scrapes]
    assert all(s.status_code == 200 for s in scrapes)
    first = product(samples[0])
    assert all(product(s) == first for s in samples[1:]), "scrapes differ between web workers"
    m = samples[0]
    assert value(m, "monitoring_metrics_collect_success") == 1
    assert value(m, "monitoring_ingest_events_accepted_total", tenant="acme") == 2 * POSTS
    assert value(m, "monitoring_ingest_events_rejected_total", tenant="acme") == POSTS
    assert value(m, "monitoring_alerts_created_total", severity="emergency") == len(PLUGINS)
    assert value(m, "monitoring_webhook_retry_total") == 1
    assert value(m, "monitoring_webhook_attempts_total", result="success") == len(PLUGINS)
    assert value(m, "monitoring_webhook_attempts_total", result="failure") == 1
    assert value(m, "monitoring_webhook_delivery_success_rate", window="15m", kind="initial") == pytest.approx(0.75)
    assert value(m, "monitoring_webhook_delivery_success_rate", window="15m", kind="cumulative") == 1
    assert value(m, "monitoring_ingest_batches_pending") == 0
    assert value(m, "monitoring_log_to_alert_latency_seconds_count") == len(PLUGINS)
    assert value(m, "monitoring_alert_to_delivery_latency_seconds_count") == len(PLUGINS)
    assert Alert.objects.count() == len(PLUGINS)

    # Request metrics from both gunicorn workers, summed (multiprocess mode): every POST counted once.
    posts = [sum(v for (name, labels), v in s.items()
                 if name == "django_http_requests_total_by_view_transport_method_total"
                 and dict(labels).get("view") == "logs" and dict(labels).get("method") == "POST") for s in samples]
    assert posts == [POSTS] * len(samples)
    # Both gunicorn workers wrote their own metric files into the shared multiprocess directory.
    assert len({f.stem.rsplit("_", 1)[-1] for f in next(tmp_path.glob("prom-*")).glob("counter_*.db")}) >= 2

    if shutil.which("promtool"):
        result = subprocess.run(["promtool", "check", "metrics"], input=time_scrape.encode(), capture_output=True,
                                timeout=30)
        assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()

    # Worker logs are JSON, one object per line; a delivery line carries its fields.
    lines = [orjson.loads(line) for line in (tmp_path / "w1.log").read_bytes().splitlines() + (
        tmp_path / "w2.log").read_bytes().splitlines() if line.startswith(b"{")]
    attempt = next(e for e in lines if e["msg"] == "delivery attempt succeeded")
    assert {"ts", "level", "logger", "alert_id", "tenant_id", "plugin_id", "attempt", "channel", "status",
            "latency_ms"} <= attempt.keys()
    assert attempt["channel"] == "webhook" and attempt["status"] == 200
    batch = next(e for e in lines if e["msg"] == "detect: batch done")
    assert {"batch_id", "events", "matched", "alerts_fired"} <= batch.keys()
    # gunicorn's own log lines (access log included) are JSON too. The only other lines are Python's
    # warning that the test checkout has no collectstatic output (the image has).
    web = [line for line in next(tmp_path.glob("gunicorn-*.log")).read_bytes().splitlines() if line.strip()]
    records = [orjson.loads(line) for line in web if line.startswith(b"{")]
    others = [line for line in web if not line.startswith(b"{")]
    assert all(b"No directory at" in line or b"mw_instance" in line for line in others), others[:3]
    access = [r for r in records if r["logger"] == "gunicorn.access" and "POST /api/v1/logs" in r["msg"]]
    assert len(access) == POSTS
