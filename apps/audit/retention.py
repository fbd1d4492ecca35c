"""The only delete the audit trail allows: rows past retention, in chunks, itself audited."""
from __future__ import annotations

from datetime import datetime

from django.db import connection, transaction

from .models import AuditEvent
from .services import record

PURGE_FLAG = "alertcenter.audit_purge"


def purge_before(cutoff: datetime, *, chunk_size: int = 5000) -> int:
    """Delete audit rows older than ``cutoff`` in chunks (short locks); returns how many."""
    total = 0
    while True:
        with transaction.atomic():
            if connection.vendor == "postgresql":
                # The trigger lets DELETE through only when this transaction-local flag is on.
                with connection.cursor() as cursor:
                    cursor.execute("SELECT set_config(%s, 'on', true)", [PURGE_FLAG])
            ids = list(AuditEvent.objects.filter(at__lt=cutoff).order_by("id").values_list("id", flat=True)[:chunk_size])
            if not ids:
                break
            # Bypass the queryset guard deliberately: this is the documented privileged path.
            deleted = models_delete(ids)
            total += deleted
    if total:
        record("audit.purged", data={"before": cutoff.isoformat(), "deleted": total})
    return total


def models_delete(ids: list[int]) -> int:
    with connection.cursor() as cursor:
        placeholders = ",".join(["%s"] * len(ids))
        cursor.execute(f"DELETE FROM {AuditEvent._meta.db_table} WHERE id IN ({placeholders})", ids)
        return cursor.rowcount
