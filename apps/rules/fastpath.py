"""The rules app's database fast paths: each operation dispatches on the database vendor to a
hand-written PostgreSQL statement or its portable ORM twin (SQLite, the embedded ``make run``).

Raw SQL kept, both on ``WindowState`` in the detect worker's transaction:
- ``lock_windows``: ``INSERT .. SELECT FROM unnest(..) ON CONFLICT DO NOTHING`` for the missing
  rows, then one ``SELECT .. ORDER BY .. FOR UPDATE`` returning plain rows;
- ``save_windows``: one ``UPDATE .. FROM unnest(..)`` instead of ``bulk_update``'s CASE per field
  and row.
Justification (bench/README.md, "Figures", ``bench/ingest.py`` on the 2-core box): together with
COPY for EventRecords (``apps.ingest.fastpath``) they took detection from 6,103 to 22,074 events/s
and the detect worker from 101 to 27 ms CPU per 1,000 events; building a model instance per row
for ``bulk_create``, the locked read and ``bulk_update`` cost more than the statements themselves.

Both twins return and take ``LockedWindow`` rows, so callers never see which one ran.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

import orjson
from django.db import connection

from apps.core.fastpath import pg_array, pg_null, pg_text_array

from .models import WindowState

WindowId = tuple[str, int, str]  # (rule_key, tenant id, group_hash): the lock order


@dataclass(frozen=True, slots=True)
class WindowKey:
    """One group's window row to create (if missing) and lock."""

    rule_key: str
    tenant_id: int
    group_hash: str
    group_key: dict[str, str]


class LockedWindow:
    """The columns of a locked ``WindowState`` row the engine reads and writes."""

    __slots__ = ("pk", "state", "last_fired_at", "alert_id", "updated_at")

    def __init__(self, pk: int, state, last_fired_at: datetime | None, alert_id: int | None) -> None:
        self.pk, self.last_fired_at, self.alert_id = pk, last_fired_at, alert_id
        self.state = orjson.loads(state) if isinstance(state, (str, bytes)) else state
        self.updated_at: datetime | None = None


def lock_windows(keys: Sequence[WindowKey], now: datetime) -> dict[WindowId, LockedWindow]:
    """Create the missing window rows (``updated_at=now``, empty state), then lock all of them in
    (rule_key, tenant id, group_hash) order; returns them by that triple.

    Must run inside the caller's transaction: the locks last until it ends. On PostgreSQL two
    callers locking overlapping windows queue rather than deadlock because both lock in one order;
    SQLite takes its database write lock when the (IMMEDIATE) transaction begins.
    """
    if not keys:
        return {}
    if connection.vendor == "postgresql":
        return _lock_windows_postgresql(keys, now)
    return _lock_windows_portable(keys, now)


_LOCK_ATTEMPTS = 3


def _lock_windows_postgresql(keys: Sequence[WindowKey], now: datetime) -> dict[WindowId, LockedWindow]:
    locked: dict[WindowId, LockedWindow] = {}
    wanted = list(keys)
    # The insert skips a row that exists without locking it, so an idle row purged in between
    # (apps.rules.retention) is missing from the lock: create it again. Those few are locked after
    # the others, out of order; a deadlock that may cause is broken by PostgreSQL and the batch retried.
    for _ in range(_LOCK_ATTEMPTS):
        with connection.cursor() as cursor:
            _insert_missing(cursor, wanted, now)
            locked.update(_select_locked(cursor, [k.group_hash for k in wanted]))
        wanted = [k for k in wanted if (k.rule_key, k.tenant_id, k.group_hash) not in locked]
        if not wanted:
            return locked
    raise RuntimeError(f"window rows vanished while being locked, {_LOCK_ATTEMPTS} times: {wanted[:3]}")


def _insert_missing(cursor, keys: Sequence[WindowKey], now: datetime) -> None:
    table = WindowState._meta.db_table
    cursor.execute(
        f'INSERT INTO "{table}" ("rule_key", "tenant_id", "group_hash", "group_key", "state", "updated_at") '
        f"SELECT u.r, u.t, u.h, u.k::jsonb, '{{}}'::jsonb, %s "
        f"FROM unnest(%s::varchar[], %s::bigint[], %s::varchar[], %s::text[]) AS u(r, t, h, k) "
        f"ON CONFLICT DO NOTHING",
        [now, pg_text_array(k.rule_key for k in keys), pg_array(str(k.tenant_id) for k in keys),
         pg_text_array(k.group_hash for k in keys), pg_text_array(orjson.dumps(k.group_key).decode() for k in keys)])


def _select_locked(cursor, hashes: list[str]) -> dict[WindowId, LockedWindow]:
    table = WindowState._meta.db_table
    cursor.execute(
        f'SELECT "id", "rule_key", "tenant_id", "group_hash", "state", "last_fired_at", "alert_id" '
        f'FROM "{table}" WHERE "group_hash" = ANY(%s::varchar[]) '
        f'ORDER BY "rule_key", "tenant_id", "group_hash" FOR UPDATE',
        [pg_text_array(hashes)])
    return {(r, t, h): LockedWindow(pk, state, fired, alert) for pk, r, t, h, state, fired, alert in cursor.fetchall()}


def _lock_windows_portable(keys: Sequence[WindowKey], now: datetime) -> dict[WindowId, LockedWindow]:
    WindowState.objects.bulk_create(
        [WindowState(rule_key=k.rule_key, tenant_id=k.tenant_id, group_hash=k.group_hash, group_key=k.group_key,
                     state={}, updated_at=now) for k in keys],
        ignore_conflicts=True)
    rows = (WindowState.objects.select_for_update()
            .filter(group_hash__in=[k.group_hash for k in keys]).order_by("rule_key", "tenant_id", "group_hash")
            .values_list("id", "rule_key", "tenant_id", "group_hash", "state", "last_fired_at", "alert_id"))
    return {(r, t, h): LockedWindow(pk, state, fired, alert) for pk, r, t, h, state, fired, alert in rows}


def save_windows(rows: Sequence[LockedWindow]) -> None:
    """Write ``state``, ``last_fired_at``, ``alert_id`` and ``updated_at`` of the rows back, in one
    statement, in the caller's transaction (the one that locked them)."""
    if not rows:
        return
    if connection.vendor == "postgresql":
        _save_windows_postgresql(rows)
    else:
        _save_windows_portable(rows)


def _save_windows_postgresql(rows: Sequence[LockedWindow]) -> None:
    table = WindowState._meta.db_table
    # Arrays, not a VALUES list: the statement's text (and psycopg's parse of it) is the same
    # for every batch, and five parameters are adapted instead of five per row.
    with connection.cursor() as cursor:
        cursor.execute(
            f'UPDATE "{table}" AS w SET "state" = v.state::jsonb, "last_fired_at" = v.last_fired_at, '
            f'"alert_id" = v.alert_id, "updated_at" = v.updated_at '
            f"FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[], %s::bigint[], %s::timestamptz[]) "
            f"AS v(id, state, last_fired_at, alert_id, updated_at) WHERE w.id = v.id",
            [pg_array(str(w.pk) for w in rows), pg_text_array(orjson.dumps(w.state).decode() for w in rows),
             pg_array(pg_null(w.last_fired_at and w.last_fired_at.isoformat()) for w in rows),
             pg_array(pg_null(w.alert_id and str(w.alert_id)) for w in rows),
             pg_array(w.updated_at.isoformat() for w in rows)])


def _save_windows_portable(rows: Sequence[LockedWindow]) -> None:
    WindowState.objects.bulk_update(
        [WindowState(pk=w.pk, state=w.state, last_fired_at=w.last_fired_at, alert_id=w.alert_id,
                     updated_at=w.updated_at) for w in rows],
        ["state", "last_fired_at", "alert", "updated_at"])


# --------------------------------------------------------------------------- metric rollups
# Same pattern for metrics intake (apps.rules.metrics): one statement per table per request, rows
# in (series, minute) order so two requests touching the same rollups lock them in one order.

RollupRow = tuple  # (series_id, minute epoch s, count, sum, min, max, sumsq, last, last_ts epoch s)


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc)


def insert_series(tenant_id: int, rows: Sequence[tuple[str, str, dict]], now: datetime) -> dict[str, int]:
    """Create the series ``(labels_hash, name, labels)`` of ``tenant_id`` (existing ones are kept)
    and return labels_hash -> id for all of them. In the caller's transaction."""
    if not rows:
        return {}
    from .models import MetricSeries

    hashes = [r[0] for r in rows]
    if connection.vendor == "postgresql":
        table = MetricSeries._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f'INSERT INTO "{table}" ("tenant_id", "name", "labels_hash", "labels", "created_at") '
                f"SELECT %s, u.n, u.h, u.l::jsonb, %s FROM unnest(%s::varchar[], %s::varchar[], %s::text[]) "
                f"AS u(h, n, l) ORDER BY u.h ON CONFLICT DO NOTHING",
                [tenant_id, now, hashes, [r[1] for r in rows], [orjson.dumps(r[2]).decode() for r in rows]])
    else:
        MetricSeries.objects.bulk_create(
            [MetricSeries(tenant_id=tenant_id, labels_hash=h, name=n, labels=labels, created_at=now)
             for h, n, labels in rows], ignore_conflicts=True)
    return dict(MetricSeries.objects.filter(tenant_id=tenant_id, labels_hash__in=hashes)
                .values_list("labels_hash", "id"))


def upsert_rollups(rows: Sequence[RollupRow]) -> None:
    """Merge per-(series, minute) aggregates into ``MetricRollup``: counts and sums add up, min/max
    widen, ``last`` is the value with the newest ``last_ts``. In the caller's transaction."""
    if not rows:
        return
    rows = sorted(rows, key=lambda r: (r[0], r[1]))
    if connection.vendor == "postgresql":
        _upsert_rollups_postgresql(rows)
    else:
        _upsert_rollups_portable(rows)


def _upsert_rollups_postgresql(rows: Sequence[RollupRow]) -> None:
    from .models import MetricRollup

    table = MetricRollup._meta.db_table
    cols = list(zip(*rows))
    # Each column goes as one array literal in text ('{1,2,3}'): psycopg adapting a list element
    # by element cost ~25 ms per 5,000-row request, the join ~3 ms. repr() of a float is its
    # shortest round-trip form, which float8 reads back exactly; the timestamps are the ISO
    # forms of the same datetimes the ORM twin stores.
    with connection.cursor() as cursor:
        cursor.execute(
            f'INSERT INTO "{table}" AS r ("series_id", "minute", "count", "sum", "min", "max", "sumsq", "last", '
            f'"last_ts") SELECT * FROM unnest(%s::bigint[], %s::timestamptz[], %s::integer[], %s::float8[], '
            f"%s::float8[], %s::float8[], %s::float8[], %s::float8[], %s::timestamptz[]) "
            f'ON CONFLICT ("series_id", "minute") DO UPDATE SET "count" = r."count" + EXCLUDED."count", '
            f'"sum" = r."sum" + EXCLUDED."sum", "min" = LEAST(r."min", EXCLUDED."min"), '
            f'"max" = GREATEST(r."max", EXCLUDED."max"), "sumsq" = r."sumsq" + EXCLUDED."sumsq", '
            f'"last" = CASE WHEN EXCLUDED."last_ts" >= r."last_ts" THEN EXCLUDED."last" ELSE r."last" END, '
            f'"last_ts" = GREATEST(r."last_ts", EXCLUDED."last_ts")',
            [pg_array(map(str, cols[0])), _timestamps(cols[1]), pg_array(map(str, cols[2]))]
            + [pg_array(map(repr, map(float, col))) for col in cols[3:8]] + [_timestamps(cols[8])])


def _timestamps(epochs) -> str:
    cache: dict[float, str] = {}  # a request's minutes repeat for every series
    return pg_array(cache.get(t) or cache.setdefault(t, _utc(t).isoformat()) for t in epochs)


def _upsert_rollups_portable(rows: Sequence[RollupRow]) -> None:
    from .models import MetricRollup

    # A bounding filter, not one OR per row: SQLite caps an expression's depth at 1,000.
    candidates = (MetricRollup.objects.select_for_update()
                  .filter(series_id__in={r[0] for r in rows}, minute__gte=_utc(min(r[1] for r in rows)),
                          minute__lte=_utc(max(r[1] for r in rows))).order_by("series_id", "minute"))
    wanted = {(r[0], r[1]) for r in rows}
    existing = {key: x for x in candidates if (key := (x.series_id, int(x.minute.timestamp()))) in wanted}
    create, update = [], []
    for sid, minute, count, total, lo, hi, sq, last, last_ts in rows:
        x = existing.get((sid, minute))
        if x is None:
            create.append(MetricRollup(series_id=sid, minute=_utc(minute), count=count, sum=total, min=lo, max=hi,
                                       sumsq=sq, last=last, last_ts=_utc(last_ts)))
            continue
        x.count, x.sum, x.min, x.max, x.sumsq = x.count + count, x.sum + total, min(x.min, lo), max(x.max, hi), \
            x.sumsq + sq
        if _utc(last_ts) >= x.last_ts:
            x.last, x.last_ts = last, _utc(last_ts)
        update.append(x)
    MetricRollup.objects.bulk_create(create)
    MetricRollup.objects.bulk_update(update, ["count", "sum", "min", "max", "sumsq", "last", "last_ts"])
