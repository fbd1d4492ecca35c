"""purge_expired on PostgreSQL: exactly what is past retention, in chunks, idempotent, audited."""
from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.audit.models import AuditEvent
from apps.core import clock
from apps.core.models import MetricRollup, WorkerHeartbeat
from apps.ingest.models import EventRecord, IngestBatch

from .factories import make_batch, make_event

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


@pytest.fixture
def aged(tenant):
    """Rows on both sides of each boundary (defaults: events 90 d, DONE batches 7 d, audit 180 d)."""
    now = clock.now()
    rows = {
        "old_events": [make_event(tenant, age=91 * DAY).pk for _ in range(3)],
        "young_events": [make_event(tenant, age=89 * DAY).pk for _ in range(2)],
        "old_done": [make_batch(tenant, accepted=10, rejected=1, age=8 * DAY).pk for _ in range(3)],
        "kept_batches": [
            make_batch(tenant, accepted=4, age=6 * DAY).pk,                       # DONE, young
            make_batch(tenant, accepted=4, status="PENDING", age=30 * DAY).pk,    # never purged
            make_batch(tenant, accepted=4, status="FAILED", age=8 * DAY).pk,      # FAILED kept 90 d
        ],
        "old_failed": [make_batch(tenant, accepted=2, status="FAILED", age=91 * DAY).pk],
        "old_audit": [AuditEvent.objects.create(at=now - 181 * DAY, actor_type="system", action="x").pk
                      for _ in range(2)],
        "young_audit": [AuditEvent.objects.create(at=now - 179 * DAY, actor_type="system", action="y").pk],
    }
    WorkerHeartbeat.objects.create(hostname="gone", last_seen=now - 8 * DAY)
    WorkerHeartbeat.objects.create(hostname="alive", last_seen=now)
    return rows


def run(*args: str) -> str:
    out = StringIO()
    call_command("purge_expired", *args, stdout=out)
    return out.getvalue()


def test_dry_run_counts_and_deletes_nothing(aged):
    out = run("--dry-run")
    assert "ingest_eventrecord: would delete 3" in out and "ingest_ingestbatch: would delete 4" in out
    assert "audit_auditevent: would delete 2" in out and "core_workerheartbeat: would delete 1" in out
    assert EventRecord.objects.count() == 5 and IngestBatch.objects.count() == 7 and AuditEvent.objects.count() == 3


def test_removes_exactly_what_is_past_retention_in_chunks(aged):
    with CaptureQueriesContext(connection) as queries:
        out = run("--chunk-size", "2")
    assert "ingest_eventrecord: deleted 3" in out and "ingest_ingestbatch: deleted 4" in out
    assert "audit_auditevent: deleted 2" in out and "core_workerheartbeat: deleted 1" in out
    assert "purge_expired: deleted 10 rows" in out
    assert sorted(EventRecord.objects.values_list("pk", flat=True)) == sorted(aged["young_events"])
    assert sorted(IngestBatch.objects.values_list("pk", flat=True)) == sorted(aged["kept_batches"])
    assert set(AuditEvent.objects.filter(action__in=["x", "y"]).values_list("pk", flat=True)) == set(aged["young_audit"])
    assert list(WorkerHeartbeat.objects.values_list("hostname", flat=True)) == ["alive"]
    # Chunks of 2: 3 events -> 2 DELETEs, 4 batches -> 2 DELETEs, each in its own transaction.
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("DELETE")]
    assert sum("ingest_eventrecord" in q for q in deletes) == 2
    assert sum("ingest_ingestbatch" in q for q in deletes) == 2
    # The audit purge is the privileged path and audits itself.
    purged = AuditEvent.objects.get(action="audit.purged")
    assert purged.data["deleted"] == 2
    # The purged batches' counts live on in the rollups (3 x 10 + 2 accepted, 3 x 1 rejected).
    rollups = dict(MetricRollup.objects.values_list("name", "value"))
    assert rollups == {"ingest_events_accepted": 32, "ingest_events_rejected": 3}


def test_idempotent(aged):
    run("--chunk-size", "2")
    out = run()
    assert "purge_expired: deleted 0 rows" in out
    assert dict(MetricRollup.objects.values_list("name", "value"))["ingest_events_accepted"] == 32


def test_bad_chunk_size_exits_non_zero(aged):
    with pytest.raises(CommandError):
        run("--chunk-size", "0")
    assert EventRecord.objects.count() == 5
