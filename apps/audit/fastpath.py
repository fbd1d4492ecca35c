"""The audit app's one vendor-specific statement: opening the append-only trigger for a purge.

On PostgreSQL a trigger (migration 0002) refuses DELETE on ``AuditEvent`` unless the transaction
set the local flag ``alertcenter.audit_purge``; SQLite has no trigger, so nothing needs opening.
Raw SQL kept: ``SELECT set_config(..)``, which has no ORM equivalent and is needed for
correctness, not speed. The DELETE itself is built by the ORM on both databases (there is no
measured gain in writing it by hand: purge runs daily, in chunks).
"""
from __future__ import annotations

from collections.abc import Sequence

from django.db import connection
from django.db.models.sql import DeleteQuery

from .models import AuditEvent

PURGE_FLAG = "alertcenter.audit_purge"


def delete_audit_rows(ids: Sequence[int]) -> int:
    """Delete the audit rows ``ids`` (the retention path only); returns how many were deleted.

    Must run inside the caller's transaction: on PostgreSQL the trigger lets the DELETE through
    only until that transaction ends. Bypasses ``AuditQuerySet``'s refusal deliberately.
    """
    if not ids:
        return 0
    if connection.vendor == "postgresql":
        return _delete_audit_rows_postgresql(ids)
    return _delete_audit_rows_portable(ids)


def _delete_audit_rows_postgresql(ids: Sequence[int]) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config(%s, 'on', true)", [PURGE_FLAG])
    return _delete_audit_rows_portable(ids)


def _delete_audit_rows_portable(ids: Sequence[int]) -> int:
    # DeleteQuery rather than QuerySet.delete(): the queryset refuses, and the collector's
    # signals and cascades have nothing to do for rows nothing references.
    return DeleteQuery(AuditEvent).delete_batch(list(ids), connection.alias)
