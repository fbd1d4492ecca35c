"""A real Prometheus Alertmanager (Debian's prometheus-alertmanager) notifying our real web server,
with a real Celery worker turning its webhooks into alerts: deduplicated, then resolved."""
from __future__ import annotations

import shutil
import subprocess
from datetime import datetime, timedelta, timezone

import pytest
import requests
import yaml

from apps.alerts.models import Alert, AlertState, TimelineEntry
from apps.core.vocabulary import AlertSource
from apps.ingest.models import BatchKind, IngestBatch
from tests.support.processes import celery_worker, free_port, gunicorn_web, stop_process, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

BINARY = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"


def _config(webhook_url: str, token: str) -> dict:
    return {
        "route": {"receiver": "alert-center", "group_by": ["alertname"], "group_wait": "0s",
                  "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "alert-center", "webhook_configs": [{
            "url": webhook_url, "send_resolved": True,
            "http_config": {"authorization": {"credentials": token}}}]}],
    }


def _alerts(ends_at: datetime | None = None) -> list[dict]:
    def one(instance: str) -> dict:
        alert = {"labels": {"alertname": "NodeDown", "severity": "page", "job": "node", "instance": instance},
                 "annotations": {"summary": f"{instance} is down", "description": "up == 0 for 1m"},
                 "generatorURL": "http://prometheus.example:9090/graph?g0.expr=up+%3D%3D+0"}
        if ends_at is not None:
            alert["endsAt"] = ends_at.isoformat().replace("+00:00", "Z")
        return alert
    return [one("db-1:9100"), one("db-2:9100")]


@pytest.fixture
def alertmanager(tmp_path):
    """start(webhook_url, token) -> Alertmanager's base URL; stopped at teardown."""
    if not shutil.os.path.exists(BINARY):
        pytest.fail(f"{BINARY} is missing: apt-get install prometheus-alertmanager")
    procs: list[subprocess.Popen] = []

    def start(webhook_url: str, token: str) -> str:
        config = tmp_path / "alertmanager.yml"
        config.write_text(yaml.safe_dump(_config(webhook_url, token)))
        port = free_port()
        log = open(tmp_path / "alertmanager.log", "wb")
        procs.append(subprocess.Popen(
            [BINARY, f"--config.file={config}", f"--storage.path={tmp_path / 'am-data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=debug"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: requests.get(f"{base}/-/ready", timeout=2).status_code == 200, timeout=30,
                 what=f"alertmanager ready (see {log.name})")
        return base

    yield start
    for proc in procs:
        stop_process(proc)


def test_alerts_posted_to_a_real_alertmanager_appear_here_deduplicated_and_resolve(
        alertmanager, tenant, make_token, clean_redis, tmp_path):
    token = make_token(tenant, "alerts:ingest", name="alertmanager")
    with gunicorn_web(tmp_path) as web, celery_worker(name="am", queues="detect", log_path=tmp_path / "worker.log"):
        am = alertmanager(f"{web}/api/v1/integrations/alertmanager", token)
        for _ in range(2):  # the same alerts twice: Alertmanager and we must keep one alert each
            assert requests.post(f"{am}/api/v2/alerts", json=_alerts(), timeout=5).status_code == 200
        wait_for(lambda: Alert.objects.filter(source=AlertSource.ALERTMANAGER).count() == 2, timeout=60,
                 what=f"two alerts here (see {tmp_path})")
        assert requests.post(f"{am}/api/v2/alerts", json=_alerts(), timeout=5).status_code == 200

        past = datetime.now(timezone.utc) - timedelta(seconds=5)
        assert requests.post(f"{am}/api/v2/alerts", json=_alerts(ends_at=past), timeout=5).status_code == 200
        wait_for(lambda: Alert.objects.filter(state=AlertState.RESOLVED).count() == 2, timeout=60,
                 what=f"both alerts resolved here (see {tmp_path})")

    alerts = list(Alert.objects.order_by("title"))
    assert [a.title for a in alerts] == ["db-1:9100 is down", "db-2:9100 is down"]
    assert Alert.objects.count() == 2
    for alert in alerts:
        assert alert.severity == "emergency" and alert.count == 1 and alert.plugin.slug == "node"
        assert alert.resolved_by == "alertmanager" and alert.tenant_id == tenant.pk
        assert alert.annotations["generatorURL"].startswith("http://prometheus.example:9090/")
        assert alert.annotations["externalURL"]  # Alertmanager's own URL
        assert len(alert.rule_key) == 16  # Alertmanager's fingerprint
        assert TimelineEntry.objects.filter(alert=alert, kind=TimelineEntry.Kind.RESOLVED,
                                            actor_label="alertmanager").exists()
    assert IngestBatch.objects.filter(kind=BatchKind.ALERTMANAGER).count() >= 2
