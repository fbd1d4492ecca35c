"""The ingest app's database fast path: ``EventRecord`` rows by ``COPY .. FROM STDIN`` on
PostgreSQL, by ``bulk_create`` elsewhere (SQLite, the embedded ``make run``).

Raw SQL kept: the COPY. Justification (bench/README.md, "Figures", ``bench/ingest.py`` on the
2-core box): with the hand-written window locks (``apps.rules.fastpath``) it took detection from
6,103 to 22,074 events/s; COPY now costs ~1 ms CPU per 1,000-event batch, about a tenth of what
``bulk_create`` took building and adapting a model instance and eleven parameters per row.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

import orjson
from django.db import connection
from psycopg.types.json import Jsonb

from .models import EventRecord

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


def _insert_event_records_postgresql(rows: Sequence[EventRow], batch_id: int, received_at: datetime) -> None:
    columns = ", ".join(f'"{c}"' for c in _COLUMNS)
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f'COPY "{EventRecord._meta.db_table}" ({columns}) FROM STDIN') as copy:
            for tid, pid, ts, level, level_no, message, trace, fields, rule_keys in rows:
                copy.write_row((tid, pid, ts, level, level_no, message, trace, Jsonb(fields, orjson.dumps),
                                Jsonb(rule_keys, orjson.dumps), batch_id, received_at))


def _insert_event_records_portable(rows: Sequence[EventRow], batch_id: int, received_at: datetime) -> None:
    EventRecord.objects.bulk_create([EventRecord(
        tenant_id=tid, plugin_id=pid, ts=ts, level=level, level_no=level_no, message=message, trace_id=trace,
        fields=fields, rule_keys=rule_keys, batch_id=batch_id, received_at=received_at,
    ) for tid, pid, ts, level, level_no, message, trace, fields, rule_keys in rows], batch_size=2000)
