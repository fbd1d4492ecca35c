"""End to end: samples posted through POST /api/v1/metrics, a real Celery worker running
``rules.evaluate_metrics``, and a threshold alert that fires and then resolves."""
from __future__ import annotations

import time

import orjson
import pytest

from alertcenter.celery import app
from apps.alerts.models import ACTIVE_STATES, Alert, AlertState
from apps.rules.services import rule_create
from tests.support.processes import celery_worker, wait_for


def post(client, value: float, n: int = 1):
    body = [{"name": "queue_depth", "labels": {"queue": "orders"}, "value": value, "ts": time.time()}] * n
    resp = client.post("/api/v1/metrics", data=orjson.dumps(body), content_type="application/json")
    assert resp.status_code == 202 and resp.json()["accepted"] == n, resp.content


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_posted_samples_fire_and_resolve_a_threshold_alert_in_a_real_worker(api, make_token, tenant, clean_redis,
                                                                           tmp_path):
    rule_create(raw={"id": "queue-deep", "kind": "threshold", "name": "Queue too deep", "metric": "queue_depth",
                     "group_by": ["queue"], "aggregation": "avg", "window": "1m", "op": ">", "value": 100,
                     "severity": "warning"}, actor="test")
    client = api(make_token(tenant, "metrics:write"))
    log = tmp_path / "worker.log"
    with celery_worker(name="metrics", queues="default", env={"METRIC_RULES_EVAL_SECONDS": "1"}, log_path=log):
        post(client, 500)

        def fired():
            app.send_task("rules.evaluate_metrics")
            return Alert.objects.filter(rule_key="queue-deep", state__in=ACTIVE_STATES).first()

        alert = wait_for(fired, timeout=60, interval=1.5, what=f"metric alert fired (see {log})")
        assert alert.source == "metric_rule" and alert.value == 500 and alert.labels == {"queue": "orders"}
        post(client, 0, n=50)  # avg over the window drops below 100

        def resolved():
            app.send_task("rules.evaluate_metrics")
            alert.refresh_from_db()
            return alert.state == AlertState.RESOLVED

        wait_for(resolved, timeout=60, interval=1.5, what=f"metric alert resolved (see {log})")
    assert alert.resolved_by == "metric-rule"
