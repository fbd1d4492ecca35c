"""Audit exports that stream: rows are read in chunks and written as they go, so exporting
millions of events holds one chunk in memory, not the whole trail."""
from __future__ import annotations

import csv
from typing import Iterator

import orjson
from django.db.models import QuerySet

from .models import AuditEvent

CSV_COLUMNS = ("at", "actor_type", "actor_id", "actor", "action", "target_type", "target_id", "tenant", "ip", "data")
CHUNK_SIZE = 2000


class _Line:
    """A file-like object whose ``write`` returns what it was given (csv.writer -> str)."""

    def write(self, value: str) -> str:
        return value


def csv_rows(events: QuerySet[AuditEvent], *, chunk_size: int = CHUNK_SIZE) -> Iterator[str]:
    """Yield the CSV header, then one line per event. ``.iterator()`` streams from a server-side
    cursor on PostgreSQL (chunks on SQLite) instead of caching the queryset."""
    writer = csv.writer(_Line())
    yield writer.writerow(CSV_COLUMNS)
    rows = events.values_list("at", "actor_type", "actor_id", "actor_label", "action", "target_type", "target_id",
                              "tenant__slug", "ip", "data")
    for at, actor_type, actor_id, actor, action, target_type, target_id, tenant, ip, data in rows.iterator(
            chunk_size=chunk_size):
        yield writer.writerow((at.isoformat(), actor_type, actor_id, _safe(actor), action, target_type, target_id,
                               tenant or "", ip or "", _safe(orjson.dumps(data or {}).decode())))


def _safe(value: str) -> str:
    # Spreadsheet formula injection: a cell starting with = + - @ runs as a formula in Excel.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
