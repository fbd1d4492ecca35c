"""apps.audit.fastpath on real PostgreSQL and (via tests/test_fastpaths_on_sqlite.py) real SQLite."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction

from apps.audit.fastpath import delete_audit_rows
from apps.audit.models import AuditEvent
from apps.audit.retention import purge_before
from apps.core import clock

pytestmark = [pytest.mark.both_databases, pytest.mark.django_db]


def event(action: str, age_days: float) -> AuditEvent:
    return AuditEvent.objects.create(at=clock.now() - timedelta(days=age_days), actor_type="system", action=action)


def test_delete_audit_rows_deletes_exactly_the_given_rows():
    doomed = [event(f"old.{i}", 200) for i in range(3)]
    kept = event("old.kept", 200)
    with transaction.atomic():
        assert delete_audit_rows([e.pk for e in doomed]) == 3
    assert list(AuditEvent.objects.values_list("pk", flat=True)) == [kept.pk]
    assert delete_audit_rows([]) == 0


def test_purge_before_removes_only_rows_past_the_cutoff_in_chunks_and_records_it():
    for i in range(5):
        event(f"ancient.{i}", 200)
    recent = event("recent", 10)
    assert purge_before(clock.now() - timedelta(days=180), chunk_size=2) == 5
    assert set(AuditEvent.objects.values_list("action", flat=True)) == {"recent", "audit.purged"}
    assert AuditEvent.objects.get(action="audit.purged").data["deleted"] == 5
    assert AuditEvent.objects.filter(pk=recent.pk).exists()
    assert purge_before(clock.now() - timedelta(days=180)) == 0
    assert AuditEvent.objects.filter(action="audit.purged").count() == 1  # nothing purged, nothing recorded
