"""The durable hand-off end to end with a real Celery worker on the Redis broker."""
from __future__ import annotations

from datetime import timedelta

import orjson
import pytest

from apps.alerts.models import Alert
from apps.core import clock
from apps.ingest.models import BatchStatus, EventRecord, IngestBatch
from apps.ingest.services import Writer, accept_events
from apps.ingest.tasks import sweep_batches
from tests.support.processes import celery_worker, wait_for

from .conftest import URL, event

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def test_posted_logs_are_detected_by_a_real_worker(writer_client, default_rules, clean_redis, tmp_path):
    with celery_worker(name="ingest", queues="detect", log_path=tmp_path / "worker.log"):
        resp = writer_client.post(URL, data=orjson.dumps(
            [event(level="FATAL", message="kernel: out of memory"), event(level="INFO")]),
            content_type="application/json")
        assert resp.status_code == 202
        batch_id = resp.json()["batch_id"]
        wait_for(lambda: IngestBatch.objects.get(pk=batch_id).status == BatchStatus.DONE, timeout=60,
                 what=f"batch {batch_id} processed (see {tmp_path / 'worker.log'})")
    alert = Alert.objects.get(rule_key="fatal-error")
    assert alert.tenant.slug == "acme" and alert.source_received_at == IngestBatch.objects.get(pk=batch_id).received_at
    assert EventRecord.objects.get().message == "kernel: out of memory"


def test_sweeper_recovers_a_batch_whose_message_was_lost(tenant, default_rules, clean_redis, monkeypatch, tmp_path,
                                                         settings):
    monkeypatch.setattr("apps.ingest.tasks.detect_batch.delay", lambda batch_id: None)  # the lost doorbell
    batch_id = accept_events(items=[event(level="FATAL", message="panic: nil map")],
                             writer=Writer(token_id=None, tenant_slug="acme")).batch_id
    monkeypatch.undo()
    IngestBatch.objects.filter(pk=batch_id).update(
        received_at=clock.now() - timedelta(seconds=settings.INGEST_SWEEP_AFTER_SECONDS + 1))
    with celery_worker(name="sweep", queues="detect", log_path=tmp_path / "worker.log"):
        assert IngestBatch.objects.get(pk=batch_id).status == BatchStatus.PENDING
        assert sweep_batches() == 1
        wait_for(lambda: IngestBatch.objects.get(pk=batch_id).status == BatchStatus.DONE, timeout=60,
                 what="swept batch processed")
    assert Alert.objects.filter(rule_key="fatal-error").count() == 1
