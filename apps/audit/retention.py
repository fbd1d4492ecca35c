"""The only delete the audit trail allows: rows past retention, in chunks, itself audited."""
from __future__ import annotations

from datetime import datetime

from django.db import transaction

from .fastpath import delete_audit_rows
from .models import AuditEvent
from .services import record


def purge_before(cutoff: datetime, *, chunk_size: int = 5000) -> int:
    """Delete audit rows older than ``cutoff`` in chunks (short locks); returns how many."""
    total = 0
    while True:
        with transaction.atomic():
            ids = list(AuditEvent.objects.filter(at__lt=cutoff).order_by("id").values_list("id", flat=True)[:chunk_size])
            if not ids:
                break
            total += delete_audit_rows(ids)
    if total:
        record("audit.purged", data={"before": cutoff.isoformat(), "deleted": total})
    return total
