"""Tables partitioned by day on PostgreSQL, so retention drops a day whole instead of deleting its
rows one by one (a chunked DELETE writes WAL and leaves a dead tuple per row for vacuum; a DROP
writes neither).

Each such table has one partition per UTC day, ``<table>_pYYYYMMDD``, plus a DEFAULT partition for
rows outside them (a day nobody created in time, a clock far off). The tables and their migrations:
``ingest_eventrecord`` by ``received_at`` (ingest 0004), ``delivery_deliveryattempt`` by
``started_at`` (delivery 0011). Beat keeps the days a week ahead (``ensure``, hourly); retention
(``apps.ops.retention``) drops the days past its cutoff (``drop_before``) and deletes by row what is
left. SQLite (the embedded ``make run``) keeps plain tables: every method is a no-op there.

Raw SQL: partition DDL has no ORM spelling.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import NamedTuple

from django.db import DatabaseError, connection, transaction
from django.db.models import Q

logger = logging.getLogger(__name__)

DAYS_AHEAD = 7
# Making or dropping a partition locks its parent exclusively (and, for a new day, the DEFAULT
# partition and the tables its foreign keys reference): it waits for every transaction on them,
# and while it waits every new one queues behind it (ingest, claims, recording sends). A bounded
# wait keeps that stall short; a day not made or dropped is made or dropped at the next run.
LOCK_TIMEOUT = "2s"


class Day(NamedTuple):
    name: str
    first: date
    after: date  # the day after: the partition holds [first, after)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc)


@dataclass(frozen=True)
class DayPartitions:
    table: str
    column: str  # the partition key, a DateTimeField of the table's model

    def partitioned(self) -> bool:
        if connection.vendor != "postgresql":
            return False
        with connection.cursor() as cursor:
            cursor.execute("SELECT relkind = 'p' FROM pg_class WHERE oid = %s::regclass", [self.table])
            row = cursor.fetchone()
        return bool(row and row[0])

    def days(self) -> list[Day]:
        """The day partitions, oldest first; [] where the table is plain."""
        if not self.partitioned():
            return []
        with connection.cursor() as cursor:
            cursor.execute("SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
                           "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass", [self.table])
            rows = cursor.fetchall()
        out = []
        for name, bound in rows:
            found = re.findall(r"'(\d{4}-\d{2}-\d{2})", bound)
            if len(found) == 2:  # the DEFAULT partition has no bounds
                out.append(Day(name, date.fromisoformat(found[0]), date.fromisoformat(found[1])))
        return sorted(out, key=lambda d: d.first)

    def ensure(self, today: date, days_ahead: int = DAYS_AHEAD) -> list[str]:
        """Create the day partitions from ``today`` to ``days_ahead`` days on that do not exist yet;
        the names created. A day whose rows already sit in the DEFAULT partition (nobody created its
        partition in time) is left there: its rows stay readable and retention deletes them by row.
        A day whose locks do not come within ``LOCK_TIMEOUT`` is logged and left to the next run."""
        if not self.partitioned():
            return []
        have = {d.first for d in self.days()}
        created = []
        for offset in range(days_ahead + 1):
            day = today + timedelta(days=offset)
            if day in have:
                continue
            name = f"{self.table}_p{day:%Y%m%d}"
            try:
                with transaction.atomic(), connection.cursor() as cursor:
                    cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                    cursor.execute(f"CREATE TABLE {name} PARTITION OF {self.table} FOR VALUES FROM (%s) TO (%s)",
                                   [_midnight(day), _midnight(day + timedelta(days=1))])
                created.append(name)
            except DatabaseError as exc:  # rows of that day in DEFAULT ("would be violated"), lock_timeout
                logger.warning("partition not created: %s", exc, extra={"partition": name})
        return created

    def days_before(self, cutoff: datetime) -> list[Day]:
        """The day partitions that end at or before ``cutoff`` (``drop_before`` drops them)."""
        return [day for day in self.days() if _midnight(day.after) <= cutoff]

    def drop_before(self, cutoff: datetime, *, droppable: Callable[[str], bool] | None = None) -> int:
        """Drop the day partitions that end at or before ``cutoff``; the number of rows they held.

        ``droppable(name)``, asked inside the drop's transaction, may keep a day for now (its rows
        are still needed elsewhere). A day whose lock does not come within ``LOCK_TIMEOUT`` is kept
        too, and logged: the next run drops it."""
        removed = 0
        for day in self.days_before(cutoff):
            try:
                with transaction.atomic(), connection.cursor() as cursor:
                    # Counted before the lock: a past day gets no new rows, and a count of millions
                    # under it would stall the table's writers as long.
                    cursor.execute(f'SELECT count(*) FROM "{day.name}"')
                    rows = cursor.fetchone()[0]
                    cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                    cursor.execute(f"LOCK TABLE {self.table} IN ACCESS EXCLUSIVE MODE")
                    if droppable is not None and not droppable(day.name):
                        continue
                    cursor.execute(f'DROP TABLE "{day.name}"')
                removed += rows
            except DatabaseError as exc:  # lock_timeout: a long transaction on the table
                logger.warning("partition not dropped: %s", exc, extra={"partition": day.name})
        return removed

    def outside_days_before(self, cutoff: datetime) -> Q:
        """Rows in no day partition that ends at or before ``cutoff``. After ``drop_before``, such a
        day is one it kept (a lock that did not come, a day not droppable yet): retention's delete by
        row leaves its rows to the next drop rather than write WAL and dead tuples for each."""
        kept = Q()
        for day in self.days_before(cutoff):
            kept |= Q(**{f"{self.column}__gte": _midnight(day.first), f"{self.column}__lt": _midnight(day.after)})
        return ~kept if kept else Q()
