"""detect.batch: claim, detect, store, mark DONE in one transaction; exactly-once; failures; sweeper."""
from __future__ import annotations

from datetime import timedelta

import orjson
import pytest

from apps.alerts.models import Alert
from apps.core import clock
from apps.ingest import processing
from apps.ingest.models import BatchKind, BatchStatus, EventRecord, IngestBatch
from apps.ingest.processing import MAX_ATTEMPTS, pending_batches_due, process_batch
from apps.ingest.services import Writer, accept_events
from apps.ingest.tasks import sweep_batches
from apps.rules.models import WindowState

from .conftest import event

pytestmark = pytest.mark.django_db
ACME = Writer(token_id=None, tenant_slug="acme")


def accept(events: list[dict]) -> int:
    result = accept_events(items=events, writer=ACME)
    assert result.accepted == len(events), result.rejected
    return result.batch_id


def test_a_batch_is_detected_stored_and_marked_done(tenant, default_rules, no_doorbell):
    batch_id = accept([event(level="FATAL", message="out of memory: killing worker", trace_id="tr-1"),
                       event(level="INFO", message="GET / 200"),
                       event(level="WARNING", message="slow query took 1200ms"),
                       event(level="INFO", message="db password=hunter2 rejected: permission denied")])
    outcome = process_batch(batch_id=batch_id)
    assert (outcome.events, outcome.stored, outcome.alerts_fired) == (4, 3, 2)
    batch = IngestBatch.objects.get(pk=batch_id)
    assert batch.status == BatchStatus.DONE and batch.processed_at is not None
    assert bytes(batch.payload) == b""  # kept events live on as EventRecords
    rows = {r.level + ":" + r.message: r for r in EventRecord.objects.all()}
    assert set(rows) == {"FATAL:out of memory: killing worker", "WARNING:slow query took 1200ms",
                         "INFO:db password=[MASKED:password] rejected: permission denied"}
    fatal = rows["FATAL:out of memory: killing worker"]
    assert set(fatal.rule_keys) == {"fatal-error", "plugin-error-burst"} and fatal.trace_id == "tr-1" and fatal.batch_id == batch_id
    assert fatal.plugin.slug == "checkout" and fatal.tenant == tenant
    assert not EventRecord.objects.filter(message__contains="hunter2").exists()
    assert set(Alert.objects.values_list("rule_key", flat=True)) == {"fatal-error", "security-keywords"}
    assert all("hunter2" not in str(a.samples) for a in Alert.objects.all())


def test_a_request_body_is_taken_in_with_the_collector_paused(tenant, no_doorbell, monkeypatch):
    import gc

    from apps.ingest import services

    seen = []
    normalize = services.normalize_event
    monkeypatch.setattr(services, "normalize_event", lambda item, **kw: seen.append(gc.isenabled()) or normalize(item, **kw))
    body = b"\n".join(orjson.dumps(e) for e in [event(message="GET / 200"), event(message="GET /x 200")])
    result = services.accept_body(raw=body, content_type="application/x-ndjson", writer=ACME)
    assert (result.accepted, seen, gc.isenabled()) == (2, [False, False], True)
    assert IngestBatch.objects.get(pk=result.batch_id).event_count == 2


def test_a_batch_is_detected_with_the_collector_paused(tenant, default_rules, no_doorbell, monkeypatch):
    import gc

    seen = []
    decode = processing.decode_events
    monkeypatch.setattr(processing, "decode_events", lambda payload: seen.append(gc.isenabled()) or decode(payload))
    process_batch(batch_id=accept([event(level="INFO", message="GET / 200")]))
    assert seen == [False] and gc.isenabled()


def test_processing_the_same_batch_twice_counts_once(tenant, default_rules, no_doorbell):
    # plugin-error-burst fires at 20 ERRORs in 5 minutes per plugin.
    first = accept([event(level="ERROR", message=f"upstream failed #{i}") for i in range(19)])
    assert process_batch(batch_id=first) is not None
    assert process_batch(batch_id=first) is None  # the doorbell rang twice
    assert EventRecord.objects.count() == 19
    state = WindowState.objects.get(rule_key="plugin-error-burst")
    assert sum(state.state["buckets"].values()) == 19
    assert not Alert.objects.exists()
    second = accept([event(level="ERROR", message="upstream failed #19")])
    process_batch(batch_id=second)
    alert = Alert.objects.get(rule_key="plugin-error-burst")
    assert alert.count == 20


def test_a_failure_rolls_everything_back_and_is_counted(tenant, default_rules, no_doorbell, monkeypatch):
    batch_id = accept([event(level="FATAL", message="segfault")])

    def broken(**kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(processing, "store_events", broken)
    with pytest.raises(RuntimeError):
        process_batch(batch_id=batch_id)
    batch = IngestBatch.objects.get(pk=batch_id)
    assert (batch.status, batch.attempts, batch.error) == (BatchStatus.PENDING, 1, "RuntimeError: disk full")
    # The engine's window update and alert were in the rolled-back transaction.
    assert not WindowState.objects.exists() and not Alert.objects.exists()
    monkeypatch.undo()
    assert process_batch(batch_id=batch_id).alerts_fired == 1
    assert Alert.objects.count() == 1 and EventRecord.objects.count() == 1


def test_a_batch_failing_on_a_foreign_key_drops_the_cached_tenant_and_plugin_ids(tenant, default_rules, no_doorbell,
                                                                                    monkeypatch):
    from django.db import IntegrityError, connection
    from django.test.utils import CaptureQueriesContext

    from apps.ingest import tenancy

    batch_id = accept([event(level="FATAL", message="segfault")])
    tenancy.tenant_map()  # cached

    def stale(**kwargs):  # what a write under a deleted tenant's cached id ends in
        raise IntegrityError('insert or update on table "ingest_eventrecord" violates foreign key constraint')

    monkeypatch.setattr(processing, "store_events", stale)
    with pytest.raises(IntegrityError):
        process_batch(batch_id=batch_id)
    with CaptureQueriesContext(connection) as queries:
        assert tenancy.tenant_map() == {"acme": tenant.pk}
    assert len(queries) == 1  # read afresh for the retry


def test_a_poison_batch_is_given_up_after_max_attempts(tenant, default_rules, no_doorbell, monkeypatch):
    batch_id = accept([event(level="ERROR")])
    monkeypatch.setattr(processing, "store_events", lambda **kw: 1 / 0)
    for _ in range(MAX_ATTEMPTS):
        with pytest.raises(ZeroDivisionError):
            process_batch(batch_id=batch_id)
    assert IngestBatch.objects.get(pk=batch_id).status == BatchStatus.FAILED
    assert process_batch(batch_id=batch_id) is None


def test_log_batches_waiting_behind_a_batch_are_detected_with_it_in_one_transaction(tenant, default_rules, no_doorbell,
                                                                                     settings):
    settings.DETECT_COALESCE_BATCHES = 3
    first, second, third, fourth = (accept([event(level="FATAL", message=f"segfault {i}", plugin_id=f"p{i}")])
                                    for i in range(4))
    IngestBatch.objects.filter(pk=fourth).update(received_at=clock.now() + timedelta(seconds=5))  # too far apart
    outcome = process_batch(batch_id=first)
    assert (outcome.batches, outcome.events, outcome.stored, outcome.alerts_fired) == (3, 3, 3, 3)
    assert set(IngestBatch.objects.filter(status=BatchStatus.DONE).values_list("pk", flat=True)) == {first, second, third}
    # Each stored event keeps its own batch and the time that batch was received.
    received = dict(IngestBatch.objects.values_list("pk", "received_at"))
    for record in EventRecord.objects.all():
        assert record.received_at == received[record.batch_id] and record.message == f"segfault {record.plugin.slug[1:]}"
    assert process_batch(batch_id=second) is None  # its own doorbell finds it done: counted once
    assert process_batch(batch_id=fourth).batches == 1
    assert Alert.objects.filter(rule_key="fatal-error").count() == 4


def test_only_log_batches_are_taken_along_and_one_per_task_when_set_so(tenant, default_rules, no_doorbell, settings):
    settings.DETECT_COALESCE_BATCHES = 1
    first, second = accept([event(level="FATAL")]), accept([event(level="FATAL", plugin_id="other")])
    assert process_batch(batch_id=first).batches == 1
    assert IngestBatch.objects.get(pk=second).status == BatchStatus.PENDING
    settings.DETECT_COALESCE_BATCHES = 4
    inbound = accept([event(level="FATAL", plugin_id="third")])
    IngestBatch.objects.filter(pk=inbound).update(kind=BatchKind.EVENTS)
    assert process_batch(batch_id=second).batches == 1
    assert IngestBatch.objects.get(pk=inbound).status == BatchStatus.PENDING


def test_a_batch_taken_along_that_fails_fails_only_itself(tenant, default_rules, no_doorbell, settings, caplog):
    settings.DETECT_COALESCE_BATCHES = 4
    good, poison = accept([event(level="FATAL", message="segfault")]), accept([event(level="FATAL", plugin_id="bad")])
    IngestBatch.objects.filter(pk=poison).update(payload=b"\xff not a batch")
    outcome = process_batch(batch_id=good)  # with the poison batch it fails; then alone it succeeds
    assert outcome.batches == 1 and outcome.alerts_fired == 1
    assert "running the batch alone" in caplog.text
    good_row, poison_row = IngestBatch.objects.get(pk=good), IngestBatch.objects.get(pk=poison)
    assert (good_row.status, good_row.attempts) == (BatchStatus.DONE, 0)
    assert (poison_row.status, poison_row.attempts) == (BatchStatus.PENDING, 0)  # its own run will count it
    with pytest.raises(Exception):
        process_batch(batch_id=poison)
    assert IngestBatch.objects.get(pk=poison).attempts == 1


def test_sweeper_picks_only_stale_pending_batches_once_per_period(tenant, no_doorbell, settings, monkeypatch):
    settings.INGEST_SWEEP_AFTER_SECONDS = 30
    old, fresh, done = accept([event()]), accept([event()]), accept([event()])
    IngestBatch.objects.filter(pk__in=[old, done]).update(received_at=clock.now() - timedelta(seconds=60))
    IngestBatch.objects.filter(pk=done).update(status=BatchStatus.DONE)
    rung: list[int] = []
    monkeypatch.setattr("apps.ingest.tasks.detect_batch.delay", rung.append)
    assert sweep_batches() == 1 and rung == [old]
    assert sweep_batches() == 0  # swept just now: not again until another period passed
    IngestBatch.objects.filter(pk=old).update(swept_at=clock.now() - timedelta(seconds=31))
    assert pending_batches_due() == [old]
    assert fresh not in rung


def test_sweeper_runs_are_bounded(tenant, no_doorbell):
    ids = [accept([event()]) for _ in range(3)]
    IngestBatch.objects.update(received_at=clock.now() - timedelta(hours=1))
    assert pending_batches_due(limit=2) == ids[:2]
    assert pending_batches_due(limit=2) == ids[2:]


def test_database_errors_of_the_batch_fastpath_are_djangos(tenant):
    # Callers catch django.db's classes (503 on OperationalError); psycopg's must not leak past them.
    from django.db import InternalError, connection, transaction

    from apps.ingest import fastpath

    with pytest.raises(InternalError), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL transaction_read_only = on")
        fastpath.insert_batch(IngestBatch(received_at=clock.now(), event_count=1, payload=b"x"))
