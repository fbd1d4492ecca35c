"""apps.ingest.fastpath on real PostgreSQL and (via tests/test_fastpaths_on_sqlite.py) real SQLite."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from django.db import transaction

from apps.ingest.fastpath import claim_pending_batch, insert_batch, insert_event_records
from apps.ingest.models import BatchKind, BatchStatus, EventRecord, IngestBatch

pytestmark = [pytest.mark.both_databases, pytest.mark.django_db]
TS = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)


def test_rows_are_stored_with_every_column_exactly_and_in_order(tenant, plugin):
    nasty = "tab\there\nnew line \\N \\. back\\slash \u00e9\u4e2d\U0001f600 'q' \"dq\""
    fields = {"path": "C:\\temp", "nested": {"list": [1, 2.5, None, True], "empty": {}}, "big": 2**53}
    rows = [(tenant.pk, plugin.pk, TS, "ERROR", 40, nasty, "t\\1", fields, ["a-rule", "b\trule"]),
            (tenant.pk, None, TS + timedelta(seconds=1), "WARNING", 30, "", None, {}, [])]
    rows += [(tenant.pk, plugin.pk, TS, "ERROR", 40, f"line {i}", None, {}, []) for i in range(2500)]
    received = TS + timedelta(seconds=2)
    insert_event_records(rows, batch_id=9, received_at=received)

    stored = list(EventRecord.objects.order_by("id"))
    assert len(stored) == 2502
    first, second = stored[0], stored[1]
    assert (first.tenant_id, first.plugin_id, first.ts, first.level, first.level_no, first.message, first.trace_id,
            first.fields, first.rule_keys) == rows[0]
    assert (second.plugin_id, second.trace_id, second.fields, second.rule_keys, second.message) == (None, None, {}, [], "")
    assert {(r.batch_id, r.received_at) for r in stored} == {(9, received)}
    assert [r.message for r in stored[2:]] == [f"line {i}" for i in range(2500)]


def test_no_rows_write_nothing(tenant):
    insert_event_records([], batch_id=1, received_at=TS)
    assert not EventRecord.objects.exists()


def test_a_batch_is_written_and_claimed_with_its_payload_byte_for_byte(tenant):
    payload = bytes(range(256)) * 700 + b"\\x00'\\"  # not text: every byte value, quotes, backslashes
    batch = insert_batch(IngestBatch(kind=BatchKind.EVENTS, tenant_id=tenant.pk, received_at=TS, event_count=3,
                                     rejected_count=1, payload=payload))
    assert batch.pk and not batch._state.adding
    stored = IngestBatch.objects.get(pk=batch.pk)
    assert (bytes(stored.payload), stored.kind, stored.tenant_id, stored.received_at, stored.event_count,
            stored.rejected_count, stored.status, stored.attempts, stored.error) == (
        payload, BatchKind.EVENTS, tenant.pk, TS, 3, 1, BatchStatus.PENDING, 0, "")
    with transaction.atomic():
        claimed = claim_pending_batch(batch.pk)
        assert (claimed.pk, bytes(claimed.payload), claimed.kind, claimed.tenant_id, claimed.received_at) == (
            batch.pk, payload, BatchKind.EVENTS, tenant.pk, TS)
    IngestBatch.objects.filter(pk=batch.pk).update(status=BatchStatus.DONE)
    with transaction.atomic():
        assert claim_pending_batch(batch.pk) is None  # only PENDING batches are claimed
    assert claim_pending_batch(batch.pk + 1000) is None



def test_event_records_come_back_exactly_as_written_whatever_their_characters(tenant, plugin):
    from datetime import datetime, timedelta, timezone

    from apps.ingest.fastpath import insert_event_records
    from apps.ingest.models import EventRecord

    t0 = datetime(2026, 11, 30, 5, 10, 27, 123456, tzinfo=timezone.utc)
    nasty = "tab\there, new\nline, cr\rreturn, back\\slash \\N \\t, quote \" ' and ünïcode ✓ 🚀"
    rows = [
        (tenant.pk, plugin.pk, t0, "ERROR", 40, nasty, "trace-1", {"k": nasty, "n": [1, 2.5, None, True]}, ["a", "b"]),
        (tenant.pk, None, t0 + timedelta(microseconds=1), "WARNING", 30, "", None, {}, []),
        (tenant.pk, plugin.pk, t0 - timedelta(days=1), "FATAL", 50, "\\", "t\\2", {"deep": {"x": "\\"}}, ["only\\one"]),
        (tenant.pk, plugin.pk, t0, "INFO", 20, "{}\t{\"x\": 1}", None, {"\\N": "\\N", "tab\tkey": "x\ny"}, ["a", "b"]),
    ]
    received = t0 + timedelta(seconds=2)
    insert_event_records(rows, batch_id=77, received_at=received)
    got = [(r.tenant_id, r.plugin_id, r.ts, r.level, r.level_no, r.message, r.trace_id, r.fields, r.rule_keys)
           for r in EventRecord.objects.order_by("id")]
    assert got == rows
    assert set(EventRecord.objects.values_list("batch_id", "received_at")) == {(77, received)}
