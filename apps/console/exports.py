"""The alert list as CSV, streamed: rows are read through a server-side cursor in chunks and
written as they go, so an export of a million alerts holds one chunk in memory."""
from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import datetime

from django.db.models import QuerySet

from apps.alerts.models import Alert

CSV_COLUMNS = ("id", "tenant", "plugin", "severity", "state", "delivery_state", "title", "category", "rule", "count",
               "first_seen", "last_seen", "assignee", "acknowledged_by", "resolved_by", "url")
_FIELDS = ("pk", "tenant__slug", "plugin__slug", "severity", "state", "delivery_state", "title", "category",
           "rule_key", "count", "first_seen", "last_seen", "assignee__username", "acknowledged_by", "resolved_by")
CHUNK_SIZE = 2000
# Spreadsheets run a cell starting with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class _Line:
    """A file-like object whose ``write`` returns what it was given (csv.writer -> str)."""

    def write(self, value: str) -> str:
        return value


def cell(value: object) -> str:
    """A CSV cell that a spreadsheet shows as text: formula-like text gets a leading quote."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    return "'" + text if text[:1] in FORMULA_STARTS else text


def alert_csv_rows(alerts: QuerySet[Alert], *, detail_url: str, counter: list[int] | None = None,
                   chunk_size: int = CHUNK_SIZE) -> Iterator[str]:
    """Yield the header, then one line per alert of ``alerts`` (in its order). ``detail_url``
    is the alert page's absolute URL with ``0`` for the id. ``counter[0]`` counts the rows written."""
    writer = csv.writer(_Line())
    prefix, _, suffix = detail_url.rpartition("0")
    yield writer.writerow(CSV_COLUMNS)
    for row in alerts.values_list(*_FIELDS).iterator(chunk_size=chunk_size):
        line = writer.writerow([*(cell(v) for v in row), f"{prefix}{row[0]}{suffix}"])
        if counter is not None:  # before the yield: a download broken off after this row still counts it
            counter[0] += 1
        yield line
