"""Issue 12, finding 4: one body of thousands of FATAL events from distinct plugins must not create
thousands of plugins, alerts and window rows, nor hold the detect worker for a minute."""
from __future__ import annotations

import time

import orjson
import pytest

from apps.alerts.models import Alert
from apps.ingest.models import BatchStatus, IngestBatch
from apps.ingest.processing import process_batch
from apps.ingest.services import Writer, accept_events
from apps.rules.models import WindowState
from apps.tenants.models import Plugin
from tests.support.processes import celery_worker, wait_for

from .conftest import URL, event

LIMIT_REASON = ("plugin_id: tenant 'acme' has reached its limit of 50 plugins (TENANT_MAX_PLUGINS); new plugin "
                "'plugin-00050' refused")


def storm(n: int) -> list[dict]:
    return [event(level="FATAL", message=f"segfault in worker {i}", plugin_id=f"plugin-{i:05d}") for i in range(n)]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_distinct_plugin_storm_is_bounded_end_to_end(writer_client, tenant, default_rules, clean_redis, settings,
                                                       tmp_path):
    settings.TENANT_MAX_PLUGINS = 50  # intake runs in this process
    worker_env = {"ALERTS_NEW_PER_BATCH_MAX": "10", "ALERTS_NEW_PER_MINUTE_MAX": "300"}
    with celery_worker(name="storm", queues="detect", env=worker_env, log_path=tmp_path / "worker.log"):
        resp = writer_client.post(URL, data=orjson.dumps(storm(500)), content_type="application/json")
        assert resp.status_code == 202
        body = resp.json()
        wait_for(lambda: IngestBatch.objects.get(pk=body["batch_id"]).status == BatchStatus.DONE, timeout=90,
                 what=f"storm batch processed (see {tmp_path / 'worker.log'})")

    assert body["accepted"] == 50 and len(body["rejected"]) == 450
    assert body["rejected"][0]["index"] == 50 and body["rejected"][0]["error"].startswith(LIMIT_REASON)
    assert Plugin.objects.filter(tenant=tenant).count() == 50
    # Both fatal-error and plugin-error-burst match FATAL: one window per rule and admitted plugin.
    assert WindowState.objects.filter(tenant=tenant).count() == 100
    fatal = Alert.objects.filter(tenant=tenant, rule_key="fatal-error")
    folded = fatal.get(labels__storm_guard="folded")
    assert folded.count == 40 and folded.title == "Fatal error: 40 more alerts suppressed (alert storm)"
    assert fatal.exclude(pk=folded.pk).count() == 10
    assert Alert.objects.filter(tenant=tenant).count() == 11


@pytest.mark.django_db
def test_ten_thousand_distinct_plugins_with_default_limits(tenant, default_rules, no_doorbell, settings):
    # The finding's body at full size with the shipped defaults (1,000 plugins; 100 new alerts per batch).
    assert (settings.TENANT_MAX_PLUGINS, settings.ALERTS_NEW_PER_BATCH_MAX) == (1000, 100)
    result = accept_events(items=storm(10_000), writer=Writer(token_id=None, tenant_slug="acme"))
    assert result.accepted == 1000 and len(result.rejected) == 9000
    assert "limit of 1000 plugins (TENANT_MAX_PLUGINS)" in result.rejected[-1]["error"]

    started = time.monotonic()
    outcome = process_batch(batch_id=result.batch_id)
    detect_seconds = time.monotonic() - started
    assert outcome.events == 1000
    assert Plugin.objects.filter(tenant=tenant).count() == 1000
    assert WindowState.objects.filter(tenant=tenant).count() == 2000
    assert Alert.objects.filter(tenant=tenant).count() == 101  # 100 + one fold alert for fatal-error
    assert Alert.objects.get(labels__storm_guard="folded").count == 900
    # Before: 78 s for 10,000 alerts on the 2-core box; now about a second (README "Limits").
    assert detect_seconds < 20, f"detect took {detect_seconds:.1f} s"
