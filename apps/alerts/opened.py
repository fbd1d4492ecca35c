"""How many alerts each tenant opened in the last minute: the storm guard's per-minute budget.

Counted per tenant in slots of ``SLOT_SECONDS`` (``OpenedCount`` rows) instead of counting the
minute's alerts at every detect batch, a count that grew with the very storm it guards (bench/storm.py:
90 ms of PostgreSQL a batch at 1,000 new alerts/s). ``note`` adds a transaction's new alerts;
they are written when it commits (one upsert a transaction, in its own short statement, so two
workers never wait on each other's counter rows for the rest of a transaction), and a rolled-back
transaction counts nothing. ``last_minute`` sums the current slot and the ``WINDOW_SLOTS - 1``
before it: a window of 60 to 70 s, never less than a minute, so the budget may hold back a little
early but never lets a minute's alerts overshoot it. A worker killed between its commit and the
upsert leaves that batch uncounted (a batch at most; the per-batch bound does not depend on it).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from datetime import datetime

from django.db import connection, transaction
from django.db.models import Sum

from apps.core import clock, on_commit

from .models import OpenedCount

SLOT_SECONDS = 10
WINDOW_SLOTS = 7  # slots summed: the current one and six before it (60-70 s)

_purged_below = 0  # this process last deleted the slots below this one


def slot_of(at: datetime) -> int:
    return int(at.timestamp()) // SLOT_SECONDS


def note(counts: Mapping[int, int], *, at: datetime | None = None) -> None:
    """Count ``counts`` ({tenant id: alerts opened}) for this transaction, at ``at`` (now)."""
    counts = {t: n for t, n in counts.items() if n > 0}
    if not counts:
        return
    slot = slot_of(at or clock.now())
    tally = on_commit.pending_here(_Tally)
    if tally is not None and tally.slot == slot:
        tally.counts.update(counts)
        return
    tally = _Tally(slot)
    tally.counts.update(counts)  # before registering: outside a transaction on_commit runs it at once
    transaction.on_commit(tally, robust=True)


def last_minute(tenant_ids: Collection[int], *, now: datetime | None = None) -> dict[int, int]:
    """{tenant id: alerts opened in the last 60-70 s} of the tenants that opened any."""
    since = slot_of(now or clock.now()) - WINDOW_SLOTS + 1
    rows = (OpenedCount.objects.filter(tenant_id__in=list(tenant_ids), slot__gte=since).order_by()
            .values("tenant_id").annotate(total=Sum("n")).values_list("tenant_id", "total"))
    return {t: n for t, n in rows if n}


class _Tally:
    """This transaction's new alerts per tenant in one slot; an on_commit callback, so a rollback
    drops it with the alerts (``apps.core.on_commit``)."""

    def __init__(self, slot: int) -> None:
        self.slot = slot
        self.counts: Counter[int] = Counter()

    def __call__(self) -> None:
        _write(self.slot, self.counts)


def _write(slot: int, counts: Mapping[int, int]) -> None:
    global _purged_below
    table = connection.ops.quote_name(OpenedCount._meta.db_table)
    rows = sorted(counts.items())  # one order: two upserts of the same tenants queue, never deadlock
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (tenant_id, slot, n) VALUES {', '.join(['(%s, %s, %s)'] * len(rows))}"
            f" ON CONFLICT (tenant_id, slot) DO UPDATE SET n = {table}.n + excluded.n",
            [v for tenant_id, n in rows for v in (tenant_id, slot, n)])
        expired = slot - WINDOW_SLOTS
        if expired != _purged_below:  # once a slot per process
            cursor.execute(f"DELETE FROM {table} WHERE slot < %s", [expired])
            _purged_below = expired
