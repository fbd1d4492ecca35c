from datetime import timedelta

import psycopg
import pytest
from django.db import DatabaseError, connection, transaction

from apps.audit.models import AppendOnlyError, AuditEvent
from apps.audit.retention import purge_before
from apps.audit.services import record
from apps.core import clock

pytestmark = pytest.mark.django_db


def test_record_describes_actor_target_and_tenant(tenant, django_user_model):
    user = django_user_model.objects.create_user("op", password="x" * 12)
    event = record("tenant.updated", actor=user, target=tenant, tenant=tenant, data={"k": 1}, ip="10.0.0.1")
    event.refresh_from_db()
    assert (event.actor_type, event.actor_id, event.actor_label) == ("user", str(user.pk), "op")
    assert (event.target_type, event.target_id, event.tenant_id) == ("tenants.tenant", str(tenant.pk), tenant.pk)
    assert event.data == {"k": 1} and event.ip == "10.0.0.1"
    assert record("x.y").actor_type == "system"


def test_orm_refuses_update_and_delete():
    event = record("thing.happened")
    event.action = "rewritten"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(action="rewritten")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).delete()
    assert AuditEvent.objects.get(pk=event.pk).action == "thing.happened"


def test_raw_sql_update_and_delete_are_refused_on_postgresql():
    assert connection.vendor == "postgresql"
    event = record("thing.happened")
    for sql in ("UPDATE audit_auditevent SET action = 'x' WHERE id = %s", "DELETE FROM audit_auditevent WHERE id = %s"):
        with pytest.raises(DatabaseError, match="append-only"):
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(sql, [event.pk])
    assert AuditEvent.objects.get(pk=event.pk).action == "thing.happened"


def test_purge_is_the_only_delete_and_is_itself_audited():
    old = record("old.thing")
    with connection.cursor() as cursor:  # backdate through the trigger is refused, so insert old rows directly
        cursor.execute(
            "INSERT INTO audit_auditevent (at, actor_type, actor_id, actor_label, action, target_type, target_id, data)"
            " VALUES (%s, 'system', '', 'system', 'ancient', '', '', '{}')",
            [clock.now() - timedelta(days=200)],
        )
    deleted = purge_before(clock.now() - timedelta(days=180), chunk_size=1)
    assert deleted == 1
    assert not AuditEvent.objects.filter(action="ancient").exists()
    assert AuditEvent.objects.filter(pk=old.pk).exists()
    purge = AuditEvent.objects.get(action="audit.purged")
    assert purge.data["deleted"] == 1


def test_truncate_is_refused_on_postgresql():
    """Row triggers do not fire on TRUNCATE; the statement-level trigger does. The test database
    opens it for Django's flush (tests/conftest.py), so this session closes it again first."""
    assert connection.vendor == "postgresql"
    event = record("thing.happened")
    for sql in ("TRUNCATE audit_auditevent", "TRUNCATE audit_auditevent CASCADE"):
        with pytest.raises(DatabaseError, match="append-only: TRUNCATE refused"):
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL alertcenter.audit_truncate = 'off'")
                cursor.execute(sql)
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_truncate_trigger_is_installed_for_every_statement():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tgtype FROM pg_trigger WHERE tgname = 'audit_event_no_truncate'"
            " AND tgrelid = 'audit_auditevent'::regclass"
        )
        (tgtype,) = cursor.fetchone()
    # pg_trigger.tgtype bits: 1 = FOR EACH ROW (must be off), 2 = BEFORE, 32 = TRUNCATE.
    assert tgtype & 1 == 0 and tgtype & 2 and tgtype & 32
