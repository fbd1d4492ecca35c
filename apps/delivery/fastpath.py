"""The delivery app's vendor-specific SQL, each operation beside its portable ORM twin.

``insert_attempts``: a recorded batch's attempt rows plus its successes marked DELIVERED (only
where the claim still holds) in one PostgreSQL statement (arrays in, ``RETURNING`` the marked ids)
instead of one INSERT and one UPDATE per delivery: recording is on the drain's critical path, where
a delivery costs about 2 ms of CPU in all and PostgreSQL 0.45 ms of it (bench/delivery.py; the
figures with and without it are in the issue-11 note). The portable twin (SQLite, the embedded
``make run``) does the same through the ORM: one bulk INSERT, then one guarded UPDATE per success.
Both are tested on real databases (``tests/delivery/test_fastpath.py``, marked ``both_databases``).
"""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from django.db import connection

from .models import Delivery, DeliveryAttempt, DeliveryState

if TYPE_CHECKING:
    from .dispatch import Outcome


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
    params = [
        [o.delivery.pk for o in outcomes], numbers, [str(o.delivery.channel) for o in outcomes],
        [o.started_at for o in outcomes], [o.latency_ms for o in outcomes], [o.status_code for o in outcomes],
        [o.ok for o in outcomes], ["" if o.ok else o.error.message[:2000] for o in outcomes],
        [(o.result.response_excerpt if o.ok else o.error.response_excerpt)[:1024] for o in outcomes],
        str(DeliveryState.DELIVERED), now, now, [o.delivery.pk for o, _ in ok], [n for _, n in ok],
        [o.status_code for o, _ in ok], [o.delivery.claim_token for o, _ in ok], str(DeliveryState.SENDING),
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
