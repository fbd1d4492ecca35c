"""The alerts app's vendor-specific SQL, each operation beside its portable ORM twin.

``absorb_bulk`` adds a detection batch's occurrences to their active alerts. On PostgreSQL: one
``UPDATE .. FROM unnest(..)`` that locks the rows in id order (no deadlock between two callers),
one more only for alerts whose trace ids or samples are below their caps and gain an item, one
``UPDATE`` of the recent "occurrence" timeline lines and one COPY of the missing ones (a plain
INSERT below ``COPY_MIN_ROWS``): a constant number of statements for any batch. Kept because
``tests/rules/test_engine.py`` shows absorbing 30 groups costs the same statements as absorbing 4,
and the detect path (bench/ingest.py:
detected 6,103 -> 22,074 events/s with the set-based window and absorb statements) depends on it.
The portable twin (SQLite, the embedded ``make run``) does one locked read and save per alert.
Both are tested on real databases (``tests/alerts/test_absorb_bulk.py``, marked ``both_databases``).

``insert_alerts`` writes a detection batch's new alerts: multi-row ``INSERT .. ON CONFLICT DO
NOTHING RETURNING``, the same text on PostgreSQL and SQLite (>= 3.35); the rows the partial unique
index refuses come back without an id (``fire_alerts_bulk`` retries them one by one). On PostgreSQL
a batch is first tried as one COPY in a savepoint (``apps.core.fastpath.bulk_insert``), which
costs far less CPU than psycopg splitting and binding ~40 placeholders a row (bench/storm.py:
_split_query alone was 7 % of the storm worker); only when a concurrent batch took one of the
fingerprints (unique violation: rare, the savepoint rolls the COPY back) does it fall back to the
``ON CONFLICT`` statement. Tested on both databases in ``tests/alerts/test_fire_bulk.py``.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Sequence

import orjson
from django.conf import settings
from django.db import IntegrityError, connection, transaction

from apps.core.fastpath import COPY_MIN_ROWS, bulk_insert, pg_array, pg_null, pg_text_array

from . import firing  # the shared caps and single-alert absorb (used at call time: firing imports us)
from .history import actor_label, insert_timeline
from .models import ACTIVE_STATES, Alert, TimelineEntry

if TYPE_CHECKING:
    from .firing import Absorb


def absorb_bulk(combined: dict[int, Absorb], now: datetime) -> dict[int, int]:
    """Absorb ``combined`` (one item per alert id) into the alerts still active; {alert id: new count}."""
    if connection.vendor != "postgresql":
        return _absorb_bulk_portable(combined, now)
    counts, lists = _update_alerts(list(combined.values()), now)
    if not counts:
        return counts
    _merge_lists(combined, lists)
    _record_occurrences({aid: combined[aid].occurrences for aid in counts}, counts, now)
    return counts


def _absorb_bulk_portable(combined: dict[int, Absorb], now: datetime) -> dict[int, int]:
    """One locked read and save per alert (``firing._absorb``), through the ORM."""
    out = {}
    for aid in sorted(combined):
        it = combined[aid]
        alert = Alert.objects.select_for_update().filter(pk=aid, state__in=ACTIVE_STATES).first()
        if alert is None:
            continue
        firing._absorb(alert, occurrences=it.occurrences, first_seen=it.first_seen, last_seen=it.last_seen,
                trace_ids=list(it.trace_ids), samples=list(it.samples), auto_resolve_seconds=it.auto_resolve_seconds)
        out[aid] = alert.count
    return out


def _json(value):
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


def _update_alerts(items: list[Absorb], now: datetime) -> tuple[dict[int, int], dict[int, tuple]]:
    """The guarded counter UPDATE; ({id: count}, {id: (trace_ids or None, samples or None)}).

    The lists come back only while below their caps (a full list never changes again).
    """
    table = Alert._meta.db_table
    states = [str(s) for s in ACTIVE_STATES]
    # Arrays rather than a VALUES list: one statement text (parsed once by psycopg) for any size;
    # array literals rather than lists (apps.core.fastpath.pg_array).
    sql = (
        f'WITH locked AS (SELECT "id" FROM "{table}" WHERE "id" = ANY(%s::bigint[]) AND "state" = ANY(%s::text[]) '
        f'ORDER BY "id" FOR UPDATE) '
        f'UPDATE "{table}" AS a SET "count" = a."count" + v.n, "first_seen" = LEAST(a."first_seen", v.fs), '
        f'"last_seen" = GREATEST(a."last_seen", v.ls), "auto_resolve_seconds" = v.ars, '
        f'"auto_resolve_at" = GREATEST(a."last_seen", v.ls) + make_interval(secs => v.ars), "updated_at" = %s '
        f"FROM unnest(%s::bigint[], %s::integer[], %s::timestamptz[], %s::timestamptz[], %s::integer[]) "
        f"AS v(id, n, fs, ls, ars) JOIN locked ON locked.id = v.id "
        f'WHERE a."id" = v.id AND a."state" = ANY(%s::text[]) '
        f'RETURNING a."id", a."count", '
        f'CASE WHEN jsonb_array_length(a."trace_ids") < {firing.MAX_TRACE_IDS} THEN a."trace_ids" END, '
        f'CASE WHEN jsonb_array_length(a."samples") < {firing.MAX_SAMPLES} THEN a."samples" END')
    ids = pg_array([str(it.alert_id) for it in items])
    states = pg_text_array(states)
    params = [ids, states, now, ids, pg_array([str(it.occurrences) for it in items]),
              pg_array([it.first_seen.isoformat() for it in items]), pg_array([it.last_seen.isoformat() for it in items]),
              pg_array([pg_null(it.auto_resolve_seconds and str(it.auto_resolve_seconds)) for it in items]), states]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    counts = {aid: count for aid, count, _, _ in rows}
    lists = {aid: (_json(t), _json(s)) for aid, _, t, s in rows if t is not None or s is not None}
    return counts, lists


def _merge_lists(combined: dict[int, Absorb], lists: dict[int, tuple]) -> None:
    """Second UPDATE, only for alerts whose capped lists gain items (rows are locked: no lost merge)."""
    changes = []
    for aid, (traces, samples) in lists.items():
        it = combined[aid]
        new_t = firing._merge(traces, it.trace_ids, firing.MAX_TRACE_IDS) if traces is not None and it.trace_ids else traces
        new_s = firing._merge(samples, it.samples, firing.MAX_SAMPLES) if samples is not None and it.samples else samples
        if new_t != traces or new_s != samples:
            changes.append((aid, None if new_t == traces else orjson.dumps(new_t).decode(),
                            None if new_s == samples else orjson.dumps(new_s).decode()))
    if not changes:
        return
    table = Alert._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f'UPDATE "{table}" AS a SET "trace_ids" = COALESCE(v.t::jsonb, a."trace_ids"), '
            f'"samples" = COALESCE(v.s::jsonb, a."samples") FROM unnest(%s::bigint[], %s::text[], %s::text[]) '
            f'AS v(id, t, s) WHERE a."id" = v.id',
            [pg_array([str(c[0]) for c in changes]), pg_text_array([c[1] for c in changes]),
             pg_text_array([c[2] for c in changes])])


def _record_occurrences(occurrences: dict[int, int], counts: dict[int, int], now: datetime) -> None:
    """Fold each alert's occurrences into its "occurrence" line of the last minute, or add one.

    Same lines as ``_absorb`` writes one alert at a time: data {occurrences, batches, count}.
    """
    table = TimelineEntry._meta.db_table
    ids = sorted(occurrences)
    total = "(COALESCE((t.\"data\"->>'occurrences')::bigint, 0) + v.n)"
    with connection.cursor() as cursor:
        cursor.execute(
            f'UPDATE "{table}" AS t SET "data" = jsonb_build_object(\'occurrences\', {total}, '
            f"'batches', COALESCE((t.\"data\"->>'batches')::bigint, 1) + 1, 'count', v.count), "
            f"\"message\" = '+' || {total} || ' occurrences (total ' || v.count || ')' "
            f"FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) AS v(alert_id, n, count) "
            f'CROSS JOIN LATERAL (SELECT e."id" FROM "{table}" AS e WHERE e."alert_id" = v.alert_id '
            f'AND e."kind" = %s AND e."at" >= %s ORDER BY e."at" DESC, e."id" DESC LIMIT 1) AS r '
            f'WHERE t."id" = r."id" RETURNING t."alert_id"',
            [pg_array([str(a) for a in ids]), pg_array([str(occurrences[a]) for a in ids]),
             pg_array([str(counts[a]) for a in ids]), TimelineEntry.Kind.OCCURRENCE,
             now - timedelta(seconds=firing.OCCURRENCE_COALESCE_SECONDS)])
        folded = {row[0] for row in cursor.fetchall()}
    label, kind = actor_label(None), TimelineEntry.Kind.OCCURRENCE
    insert_timeline([(aid, now, kind, label, None, f"+{occurrences[aid]} occurrences (total {counts[aid]})",
                      {"occurrences": occurrences[aid], "batches": 1, "count": counts[aid]})
                     for aid in ids if aid not in folded])


# Rows per INSERT: keeps a statement under SQLite's 32,766 bound parameters (Alert has ~40 columns).
INSERT_CHUNK = 500


def copies(count: int) -> bool:
    """Are ``count`` new alerts written by one COPY (PostgreSQL, at least ``COPY_MIN_ROWS``)? Then
    ``firing`` reserves their ids first (``reserve_ids``) and writes them after their deliveries
    (``bulk_insert``, in a savepoint: a fingerprint a concurrent batch took meanwhile raises
    ``IntegrityError`` and its rollback leaves nothing half-written)."""
    return connection.vendor == "postgresql" and count >= COPY_MIN_ROWS


def insert_alerts(alerts: Sequence[Alert]) -> None:
    """INSERT unsaved ``alerts`` (distinct fingerprints), one statement per ``INSERT_CHUNK`` rows.

    Sets ``pk`` on each inserted alert. An alert whose active fingerprint already exists (a
    concurrent batch committed it first: the statement waits for that transaction, as a plain
    INSERT would) is skipped and keeps ``pk`` None.
    """
    if connection.vendor == "postgresql" and len(alerts) >= COPY_MIN_ROWS:
        try:
            with transaction.atomic():  # a savepoint: a conflict undoes only the COPY
                bulk_insert(alerts)
            return
        except IntegrityError:
            pass  # a fingerprint taken meanwhile: the ON CONFLICT statement below skips exactly those
    fields = [f for f in Alert._meta.concrete_fields if not f.primary_key]
    quote = connection.ops.quote_name
    head = (f"INSERT INTO {quote(Alert._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) VALUES ")
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    tail = f" ON CONFLICT DO NOTHING RETURNING {quote('id')}, {quote('fingerprint')}"
    for start in range(0, len(alerts), INSERT_CHUNK):
        chunk = alerts[start:start + INSERT_CHUNK]
        params = [f.get_db_prep_save(f.pre_save(a, True), connection) for a in chunk for f in fields]
        with connection.cursor() as cursor:
            cursor.execute(head + ", ".join([row] * len(chunk)) + tail, params)
            ids = dict((fp, pk) for pk, fp in cursor.fetchall())
        for alert in chunk:
            alert.pk = ids.get(alert.fingerprint)
            if alert.pk is not None:
                alert._state.adding, alert._state.db = False, connection.alias


def taken_fingerprints(fingerprints: set[str], now: datetime) -> set[str]:
    """PostgreSQL's ``firing._taken_fingerprints``: one index probe per fingerprint, whatever the
    statistics say. The ``LIMIT 1`` in the lateral subquery keeps it a nested loop over the given
    fingerprints (it cannot be flattened into a join that a stale row estimate could turn into a
    scan of the alerts), each probe on the (fingerprint, created_at) index."""
    if not fingerprints:
        return set()
    window = settings.ALERT_REOPEN_WINDOW_SECONDS
    recent = " OR a.resolved_at >= %s" if window > 0 else ""
    params: list = [sorted(fingerprints), list(ACTIVE_STATES)]
    if window > 0:
        params.append(now - timedelta(seconds=window))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT f.fp FROM unnest(%s::text[]) AS f(fp) CROSS JOIN LATERAL ("
            f"SELECT 1 FROM {Alert._meta.db_table} a WHERE a.fingerprint = f.fp"
            f" AND (a.state = ANY(%s){recent}) LIMIT 1) AS hit", params)
        return {row[0] for row in cursor.fetchall()}
