from datetime import timedelta

import pytest
from django.test import override_settings
from django.urls import reverse

from apps.core import clock
from apps.core.models import WorkerHeartbeat

pytestmark = pytest.mark.django_db


def test_healthy_when_database_broker_and_worker_are_up(api):
    WorkerHeartbeat.objects.create(hostname="w1", last_seen=clock.now())
    resp = api().get(reverse("health"))
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"] == {"ok": True, "detail": "postgresql"}
    assert body["checks"]["broker"]["ok"] is True


def test_503_without_a_fresh_worker_heartbeat(api):
    resp = api().get(reverse("health"))
    assert resp.status_code == 503
    assert resp.json()["checks"]["worker"] == {"ok": False, "detail": "no worker heartbeat yet"}
    WorkerHeartbeat.objects.create(hostname="w1", last_seen=clock.now() - timedelta(minutes=5))
    resp = api().get(reverse("health"))
    assert resp.status_code == 503
    assert resp.json()["checks"]["worker"]["ok"] is False


def test_503_when_the_broker_is_unreachable(api):
    WorkerHeartbeat.objects.create(hostname="w1", last_seen=clock.now())
    with override_settings(CELERY_BROKER_URL="redis://127.0.0.1:1/0"):
        resp = api().get(reverse("health"))
    assert resp.status_code == 503
    assert resp.json()["checks"]["broker"]["ok"] is False


def test_schema_docs_and_metrics_are_served(api):
    assert api().get("/api/schema/").status_code == 200
    assert api().get("/api/docs/").status_code == 200
    metrics = api().get("/metrics")
    assert metrics.status_code == 200
    assert b"django_http_requests_total_by_method_total" in metrics.content
