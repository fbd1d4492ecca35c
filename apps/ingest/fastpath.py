"""The ingest app's database fast path: ``EventRecord`` rows by ``COPY .. FROM STDIN`` on
PostgreSQL, by ``bulk_create`` elsewhere (SQLite, the embedded ``make run``); a batch row written
and claimed with its payload as a binary parameter.

Raw SQL kept: the COPY. Justification (bench/README.md, "Figures", ``bench/ingest.py`` on the
2-core box): with the hand-written window locks (``apps.rules.fastpath``) it took detection from
6,103 to 22,074 events/s; COPY now costs ~1 ms CPU per 1,000-event batch, about a tenth of what
``bulk_create`` took building and adapting a model instance and eleven parameters per row. Its
rows are formatted as COPY text by hand (``apps.core.fastpath.copy_text``), not value by value by psycopg.

Raw SQL kept: the batch INSERT and claim. Django binds parameters on the client, so a payload
(~150 KB per 1,000 events) travelled as a hex literal: escaped in Python, lexed as SQL text and
hex-decoded by the server, and hex-encoded again for the worker. Under ``perf`` on the 2-core box,
SQL lexing was 14% of PostgreSQL's CPU in bench/ingest.py. These two statements use a server-side
bound cursor on the same connection (same transaction) and send and read the payload as binary.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

import orjson
import psycopg
from django.db import connection

from apps.core.fastpath import COPY_NULL, copy_text
from apps.core.partitions import DayPartitions

from .models import BatchStatus, EventRecord, IngestBatch

# One stored event: (tenant id, plugin id or None, ts, level, level_no, message, trace_id,
# fields, rule_keys); the batch's id and received_at are the same for every row.
EventRow = tuple[int, int | None, datetime, str, int, str, str | None, dict[str, Any], list[str]]

_COLUMNS = ("tenant_id", "plugin_id", "ts", "level", "level_no", "message", "trace_id", "fields", "rule_keys",
            "batch_id", "received_at")


def insert_event_records(rows: Sequence[EventRow], *, batch_id: int, received_at: datetime) -> None:
    """Insert ``rows`` as ``EventRecord``s of one batch, in order, in the caller's transaction."""
    if not rows:
        return
    if connection.vendor == "postgresql":
        _insert_event_records_postgresql(rows, batch_id, received_at)
    else:
        _insert_event_records_portable(rows, batch_id, received_at)


_COPY_EVENTS = 'COPY "{}" ({}) FROM STDIN'.format(EventRecord._meta.db_table, ", ".join(f'"{c}"' for c in _COLUMNS))


def _insert_event_records_postgresql(rows: Sequence[EventRow], batch_id: int, received_at: datetime) -> None:
    # The rows are written as COPY text here rather than by psycopg's write_row, which looked up
    # and called a dumper per value (py-spy, bench/ingest.py: 6% of the detect worker).
    tail = f"{batch_id}\t{received_at.isoformat()}\n"
    keys_text: dict[tuple, str] = {}  # a batch has few distinct rule key lists
    lines = []
    for tid, pid, ts, level, level_no, message, trace, fields, rule_keys in rows:
        keys = tuple(rule_keys)
        keys_json = keys_text.get(keys)
        if keys_json is None:
            keys_json = keys_text[keys] = copy_text(orjson.dumps(rule_keys).decode())
        lines.append(f"{tid}\t{COPY_NULL if pid is None else pid}\t{ts.isoformat()}\t{copy_text(level)}\t{level_no}\t"
                     f"{copy_text(message)}\t{COPY_NULL if trace is None else copy_text(trace)}\t"
                     f"{'{}' if fields == {} else copy_text(orjson.dumps(fields).decode())}\t{keys_json}\t{tail}")
    with connection.cursor() as cursor, connection.wrap_database_errors, cursor.cursor.copy(_COPY_EVENTS) as copy:
        copy.write("".join(lines))


def _insert_event_records_portable(rows: Sequence[EventRow], batch_id: int, received_at: datetime) -> None:
    EventRecord.objects.bulk_create([EventRecord(
        tenant_id=tid, plugin_id=pid, ts=ts, level=level, level_no=level_no, message=message, trace_id=trace,
        fields=fields, rule_keys=rule_keys, batch_id=batch_id, received_at=received_at,
    ) for tid, pid, ts, level, level_no, message, trace, fields, rule_keys in rows], batch_size=2000)


# --- IngestBatch rows -----------------------------------------------------------------------------------

_BATCH_FIELDS = [f for f in IngestBatch._meta.concrete_fields if not f.primary_key]
_INSERT_BATCH = 'INSERT INTO "{}" ({}) VALUES ({}) RETURNING "id"'.format(
    IngestBatch._meta.db_table, ", ".join(f'"{f.column}"' for f in _BATCH_FIELDS),
    ", ".join("%b" if f.name == "payload" else "%s" for f in _BATCH_FIELDS))
# In the model's field order: Model.from_db pairs the values with the fields in that order.
CLAIMED_FIELDS = tuple(f.attname for f in IngestBatch._meta.concrete_fields
                       if f.attname in {"id", "received_at", "payload", "kind", "tenant_id"})
_CLAIM_BATCH = 'SELECT {} FROM "{}" WHERE "id" = %s AND "status" = %s FOR UPDATE SKIP LOCKED'.format(
    ", ".join(f'"{c}"' for c in CLAIMED_FIELDS), IngestBatch._meta.db_table)


def insert_batch(batch: IngestBatch) -> IngestBatch:
    """Save the new ``batch`` in the caller's transaction; returns it with its pk."""
    if connection.vendor != "postgresql":
        batch.save(force_insert=True)
        return batch
    values = [bytes(batch.payload) if f.name == "payload" else f.get_db_prep_save(f.pre_save(batch, True), connection)
              for f in _BATCH_FIELDS]
    # Django's cursor connects if needed; wrap_database_errors raises psycopg's errors as Django's
    # (callers answer 503 on OperationalError, retry on IntegrityError).
    with connection.cursor() as cursor, connection.wrap_database_errors, \
            psycopg.Cursor(cursor.cursor.connection) as bound:
        bound.execute(_INSERT_BATCH, values)
        batch.pk = bound.fetchone()[0]
    batch._state.adding, batch._state.db = False, connection.alias
    return batch


def claim_pending_batch(batch_id: int) -> IngestBatch | None:
    """Lock batch ``batch_id`` if it is PENDING and not locked by another worker (SKIP LOCKED), in
    the caller's transaction; None otherwise. Loads only the columns the processors read."""
    if connection.vendor != "postgresql":
        return (IngestBatch.objects.select_for_update(skip_locked=True)
                .filter(pk=batch_id, status=BatchStatus.PENDING).only(*CLAIMED_FIELDS).first())
    with connection.cursor() as cursor, connection.wrap_database_errors, \
            psycopg.Cursor(cursor.cursor.connection) as bound:
        bound.execute(_CLAIM_BATCH, [batch_id, BatchStatus.PENDING.value], binary=True)
        row = bound.fetchone()
    return None if row is None else IngestBatch.from_db(connection.alias, list(CLAIMED_FIELDS), row)


# EventRecord is partitioned by day of arrival on PostgreSQL (migration 0004; apps.core.partitions).
EVENT_PARTITIONS = DayPartitions(EventRecord._meta.db_table, "received_at")
