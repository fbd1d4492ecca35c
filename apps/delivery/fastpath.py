"""The delivery app's vendor-specific SQL, each operation beside its portable ORM twin.

``claim_rows``: the claim of a batch of deliveries in one PostgreSQL ``UPDATE ... RETURNING`` (the
claim decides who sends; the lease is judged by the database's clock), instead of an UPDATE and a
SELECT: it runs for every batch a worker sends, before any network call.

``insert_attempts``: a recorded batch's attempt rows plus its successes marked DELIVERED (only
where the claim still holds) in one PostgreSQL statement (arrays in, ``RETURNING`` the marked ids)
instead of one INSERT and one UPDATE per delivery: recording is on the drain's critical path, where
a delivery costs about 2 ms of CPU in all and PostgreSQL 0.45 ms of it (bench/delivery.py; the
figures with and without it are in the issue-11 note). The portable twin (SQLite, the embedded
``make run``) does the same through the ORM: one bulk INSERT, then one guarded UPDATE per success.
Both are tested on real databases (``tests/delivery/test_fastpath.py``, marked ``both_databases``).

``parked_probes``: the breaker's probes of many downgraded endpoints in one PostgreSQL statement (a
lateral read of delivery_probe per endpoint) instead of one query each: endpoints downgraded
together (a network partition) come due for their probes together, and 1,000 of them took one
sweep 1.3-1.6 s. The portable twin reads them one endpoint at a time (``tests/delivery/test_breaker.py``).
``probe_turn`` makes the sweepers pick and claim probes one at a time (an advisory lock).

``ATTEMPT_PARTITIONS``: the attempt log is partitioned by day of ``started_at`` on PostgreSQL
(migration 0011; ``apps.core.partitions``), so its retention drops whole days.
"""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import uuid

from django.db import connection
from django.db.models.functions import Now

from apps.core.fastpath import pg_array, pg_null, pg_text_array
from apps.core.partitions import DayPartitions

from .models import DUE_STATES, Delivery, DeliveryAttempt, DeliveryState

if TYPE_CHECKING:
    from .dispatch import Outcome

ATTEMPT_PARTITIONS = DayPartitions(DeliveryAttempt._meta.db_table, "started_at")


def insert_attempts(outcomes: list[Outcome], numbers: list[int], now: datetime) -> set[int]:
    """Insert every outcome's attempt row and mark the successes still held by their claim DELIVERED,
    in one statement (arrays in, no per-row SQL); returns the ids of the deliveries it marked."""
    if connection.vendor != "postgresql":
        return _insert_attempts_portable(outcomes, numbers, now)
    table = connection.ops.quote_name(Delivery._meta.db_table)
    attempts = connection.ops.quote_name(DeliveryAttempt._meta.db_table)
    ok = [(o, n) for o, n in zip(outcomes, numbers) if o.ok]
    sql = f"""
        WITH a AS (
            INSERT INTO {attempts} (delivery_id, number, channel, started_at, latency_ms, status_code, success,
                                    error, response_excerpt)
            SELECT * FROM unnest(%s::bigint[], %s::int[], %s::text[], %s::timestamptz[], %s::int[], %s::int[],
                                 %s::bool[], %s::text[], %s::text[])
        )
        UPDATE {table} d SET state = %s, attempts = v.number, delivered_at = %s, finished_at = %s,
            next_attempt_at = NULL, claim_token = '', last_error = '', last_status_code = v.code
        FROM unnest(%s::bigint[], %s::int[], %s::int[], %s::text[]) AS v(id, number, code, token)
        WHERE d.id = v.id AND d.state = %s AND d.claim_token = v.token
        RETURNING d.id
    """
    # Arrays as literals (core.fastpath.pg_array): psycopg would adapt each list element by element.
    params = [
        pg_array(str(o.delivery.pk) for o in outcomes), pg_array(map(str, numbers)),
        pg_text_array(str(o.delivery.channel) for o in outcomes),
        pg_text_array(o.started_at.isoformat() for o in outcomes), pg_array(str(o.latency_ms) for o in outcomes),
        pg_array(pg_null(o.status_code and str(o.status_code)) for o in outcomes),
        pg_array("t" if o.ok else "f" for o in outcomes),
        pg_text_array("" if o.ok else o.error.message[:2000] for o in outcomes),
        pg_text_array((o.result.response_excerpt if o.ok else o.error.response_excerpt)[:1024] for o in outcomes),
        str(DeliveryState.DELIVERED), now, now, pg_array(str(o.delivery.pk) for o, _ in ok),
        pg_array(str(n) for _, n in ok), pg_array(pg_null(o.status_code and str(o.status_code)) for o, _ in ok),
        pg_text_array(o.delivery.claim_token for o, _ in ok), str(DeliveryState.SENDING),
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {row[0] for row in cursor.fetchall()}


def _insert_attempts_portable(outcomes: list[Outcome], numbers: list[int], now: datetime) -> set[int]:
    """``insert_attempts`` for the embedded SQLite database, through the ORM (same rows, same guard)."""
    DeliveryAttempt.objects.bulk_create([
        DeliveryAttempt(
            delivery_id=o.delivery.pk, number=n, channel=o.delivery.channel, started_at=o.started_at,
            latency_ms=o.latency_ms, status_code=o.status_code, success=o.ok,
            error="" if o.ok else o.error.message[:2000],
            response_excerpt=(o.result.response_excerpt if o.ok else o.error.response_excerpt)[:1024],
        )
        for o, n in zip(outcomes, numbers)
    ])
    marked = set()
    for o, n in zip(outcomes, numbers):
        if o.ok and Delivery.objects.filter(pk=o.delivery.pk, state=DeliveryState.SENDING,
                                           claim_token=o.delivery.claim_token).update(
                state=DeliveryState.DELIVERED, attempts=n, delivered_at=now, finished_at=now, next_attempt_at=None,
                claim_token="", last_error="", last_status_code=o.status_code):
            marked.add(o.delivery.pk)
    return marked


def database_now() -> datetime:
    """The database's clock, which judges claims (``claimed_at`` against the lease)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT statement_timestamp()")
            return cursor.fetchone()[0]
    from django.utils import timezone

    return timezone.now()  # SQLite: the embedded database's clock is this host's


def claim_rows(ids: list[int], claim_token: str | None, now: datetime) -> list[Delivery]:
    """Claim the due ones of ``ids`` (or renew the sweeper's claim ``claim_token`` on them) and return
    the rows held, newest first; see ``dispatch.claim`` for the contract (``now`` is business time for
    ``next_attempt_at``; claims and leases use the database's clock)."""
    from .dispatch import DUE_STATES, lease

    if connection.vendor != "postgresql":
        return _claim_rows_portable(ids, claim_token, now)
    table = connection.ops.quote_name(Delivery._meta.db_table)
    sending = str(DeliveryState.SENDING)
    if claim_token:
        assign, cond = "claimed_at = statement_timestamp()", "d.state = %s AND d.claim_token = %s"
        params = [ids, sending, claim_token]
    else:
        claim_token = uuid.uuid4().hex
        # dispatch.due_q(now), in SQL: due rows, and SENDING ones whose lease expired.
        assign = "state = %s, claim_token = %s, claimed_at = statement_timestamp()"
        cond = ("((d.state = ANY(%s) AND d.next_attempt_at <= %s)"
                " OR (d.state = %s AND d.claimed_at < statement_timestamp() - %s))")
        params = [sending, claim_token, ids, [str(s) for s in DUE_STATES], now, sending, lease()]
    sql = f"""
        WITH c AS (UPDATE {table} d SET {assign} WHERE d.id = ANY(%s::bigint[]) AND {cond} RETURNING d.*)
        SELECT * FROM c ORDER BY created_at DESC, id DESC
    """
    return list(Delivery.objects.raw(sql, params))


def _claim_rows_portable(ids: list[int], claim_token: str | None, now: datetime) -> list[Delivery]:
    """``claim_rows`` for the embedded SQLite database: the same conditions through the ORM (two
    statements instead of one; SQLite serializes writers, so the UPDATE alone decides who holds)."""
    from .dispatch import due_q

    if claim_token:
        Delivery.objects.filter(pk__in=ids, state=DeliveryState.SENDING, claim_token=claim_token).update(
            claimed_at=Now())
    else:
        claim_token = uuid.uuid4().hex
        Delivery.objects.filter(pk__in=ids).filter(due_q(now)).update(
            state=DeliveryState.SENDING, claim_token=claim_token, claimed_at=Now())
    return list(Delivery.objects.filter(pk__in=ids, state=DeliveryState.SENDING, claim_token=claim_token)
                .order_by("-created_at", "-id"))


# The key of the sweepers' turn at the probes, any fixed bigint (pg_locks: locktype advisory, objid 410001).
PROBE_TURN_KEY = 410_001


def probe_turn() -> bool:
    """Whether this transaction may pick the breakers' probes: a PostgreSQL transaction-level advisory
    lock, not waited for (a sweeper that finds it taken leaves the probes to the one that holds it,
    this sweep). SQLite runs one sweeper (``make run``) and writes one transaction at a time."""
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [PROBE_TURN_KEY])
        return bool(cursor.fetchone()[0])


def parked_probes(rooms: dict[int, int], now: datetime) -> list[int]:
    """Per endpoint (``rooms``: endpoint id -> sends it may take), its parked rows not expired, the
    least tried first, then the oldest: the ids, endpoint by endpoint in ``rooms``' order."""
    from .breaker import parked

    if not rooms:
        return []
    if connection.vendor != "postgresql":
        out: list[int] = []
        for endpoint_id, room in rooms.items():
            out += (parked().filter(endpoint_id=endpoint_id, expires_at__gt=now).order_by("attempts", "expires_at")
                    .values_list("pk", flat=True)[:room])
        return out
    table = connection.ops.quote_name(Delivery._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT p.id FROM unnest(%s::bigint[], %s::integer[]) WITH ORDINALITY AS e(id, room, i) "
            f"CROSS JOIN LATERAL (SELECT d.id, d.attempts, d.expires_at FROM {table} d WHERE d.endpoint_id = e.id "
            f"AND d.state = ANY(%s::text[]) AND d.next_attempt_at IS NULL AND d.expires_at > %s "
            f"ORDER BY d.attempts, d.expires_at LIMIT e.room) AS p ORDER BY e.i, p.attempts, p.expires_at",
            [pg_array(str(e) for e in rooms), pg_array(str(r) for r in rooms.values()),
             pg_text_array(str(s) for s in DUE_STATES), now])
        return [row[0] for row in cursor.fetchall()]
