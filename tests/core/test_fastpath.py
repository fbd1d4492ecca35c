"""apps.core.fastpath.bulk_insert on real PostgreSQL (COPY) and, via tests/test_fastpaths_on_sqlite.py,
real SQLite (bulk_create): the same rows, ids, defaults and JSON as ``bulk_create``."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction

from apps.audit.models import AuditEvent
from apps.core import clock
from apps.core.fastpath import COPY_MIN_ROWS, bulk_insert, instance
from apps.stream.models import StreamEvent, StreamEventType

pytestmark = [pytest.mark.both_databases, pytest.mark.django_db]

FIELDS = ("at", "actor_type", "actor_id", "actor_label", "action", "target_type", "target_id", "tenant_id", "data", "ip")


def audit_rows(n: int, tenant, tag: str, now) -> list[AuditEvent]:
    return [AuditEvent(at=now - timedelta(seconds=i), actor_type="system", actor_label=f"quote \" tab\t{i}",
                       action=f"{tag}.{i}", target_type="alerts.alert", target_id=str(i), tenant_id=tenant.pk,
                       data={"n": i, "list": [1, "two", None], "text": "back\\slash\nnewline \u00e9", 7: 0.5},
                       ip="10.0.0.1" if i % 2 else None)
            for i in range(n)]


@pytest.mark.parametrize("n", [1, COPY_MIN_ROWS, 50])
def test_bulk_insert_stores_what_bulk_create_stores_and_sets_ascending_ids(tenant, n):
    now = clock.now()
    with transaction.atomic():
        ours = bulk_insert(audit_rows(n, tenant, "ours", now))
        theirs = AuditEvent.objects.bulk_create(audit_rows(n, tenant, "theirs", now))
    ids = [e.pk for e in ours]
    assert all(isinstance(pk, int) for pk in ids) and ids == sorted(ids) and len(set(ids)) == n
    assert all(not e._state.adding for e in ours)

    def stored(tag):
        return [{**row, "action": row["action"].split(".", 1)[1]}
                for row in AuditEvent.objects.filter(action__startswith=f"{tag}.").order_by("pk").values(*FIELDS)]

    assert stored("ours") == stored("theirs")
    assert [AuditEvent.objects.get(pk=e.pk).action for e in ours] == [f"ours.{i}" for i in range(n)]
    assert max(e.pk for e in theirs) > max(ids)  # the same sequence: later rows get later ids


def test_bulk_insert_applies_field_defaults_and_rolls_back_with_the_transaction(tenant):
    with pytest.raises(RuntimeError), transaction.atomic():
        bulk_insert([StreamEvent(tenant=tenant, type=StreamEventType.ALERT_CREATED, alert_id=i,
                                 created_at=clock.now()) for i in range(10)])
        assert StreamEvent.objects.count() == 10
        raise RuntimeError("roll back")
    assert StreamEvent.objects.count() == 0
    rows = bulk_insert([StreamEvent(tenant=tenant, type=StreamEventType.ALERT_UPDATED, alert_id=i,
                                    created_at=clock.now()) for i in range(10)])
    assert [r.data for r in StreamEvent.objects.order_by("pk")] == [{}] * 10  # default=dict
    assert list(StreamEvent.objects.order_by("pk").values_list("pk", flat=True)) == [r.pk for r in rows]
    assert bulk_insert([]) == []


def test_a_constraint_violation_raises_integrity_error_and_writes_nothing(tenant):
    rows = [StreamEvent(tenant_id=tenant.pk, type=StreamEventType.ALERT_CREATED, created_at=clock.now())
            for _ in range(COPY_MIN_ROWS)]
    rows[-1].type = None  # NOT NULL refuses the last row
    with pytest.raises(IntegrityError), transaction.atomic():
        bulk_insert(rows)
    assert StreamEvent.objects.count() == 0 and all(r.pk is None for r in rows)


@pytest.mark.parametrize("n", [1, COPY_MIN_ROWS, 30])
def test_insert_rows_stores_what_the_orm_stores_with_defaults_and_the_fields_encoder(tenant, n):
    from datetime import datetime, timezone
    from decimal import Decimal

    from apps.core.fastpath import insert_rows

    now = clock.now()
    data = {"at": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc), "amount": Decimal("1.50"), "n": [1, None]}
    with transaction.atomic():
        ids = insert_rows(StreamEvent, ("tenant_id", "type", "alert_id", "data", "created_at"),
                          [(tenant.pk, StreamEventType.ALERT_CREATED, i, data, now) for i in range(n)])
        orm = StreamEvent.objects.create(tenant_id=tenant.pk, type=StreamEventType.ALERT_CREATED, alert_id=0,
                                         data=data, created_at=now)
        defaults = insert_rows(StreamEvent, ("tenant_id", "type", "created_at"),
                               [(tenant.pk, StreamEventType.ALERT_UPDATED, now)] * n)
    assert ids == sorted(ids) and len(set(ids)) == n and orm.pk > ids[-1]
    stored = {e.pk: e for e in StreamEvent.objects.all()}
    assert [stored[i].alert_id for i in ids] == list(range(n))
    assert all(stored[i].data == stored[orm.pk].data for i in ids)  # DjangoJSONEncoder's datetime and Decimal
    assert stored[orm.pk].data["at"] == "2026-01-02T03:04:05.678Z"
    assert all(stored[i].data == {} and stored[i].alert_id is None for i in defaults)  # the model's defaults
    assert insert_rows(StreamEvent, ("tenant_id",), []) == []


def test_instance_builds_what_the_keyword_constructor_builds(tenant):
    from apps.alerts.models import Alert
    from apps.tenants.models import Plugin

    plugin = Plugin.objects.create(tenant=tenant, slug="p", name="p")
    values = dict(rule_key="r", rule_version=1, category="error", fingerprint="f" * 64, group_key={"a": "b"},
                  labels={}, severity="critical", title="t", summary="s", recommended_action="", count=1,
                  window_seconds=60, first_seen=clock.now(), last_seen=clock.now(), created_at=clock.now(),
                  updated_at=clock.now())
    ours = instance(Alert, values, {"tenant": tenant, "plugin": plugin})
    theirs = Alert(**values, tenant=tenant, plugin=plugin)
    attnames = [f.attname for f in Alert._meta.concrete_fields]
    assert [getattr(ours, a) for a in attnames] == [getattr(theirs, a) for a in attnames]
    assert ours._state.adding and ours.pk is None
    assert ours.tenant is tenant and ours.plugin is plugin  # cached: no query to follow them
    assert ours.silence is None and ours.trace_ids == [] and ours.trace_ids is not theirs.trace_ids
    with pytest.raises(TypeError, match=r"Alert has no fields \['colour'\]"):
        instance(Alert, {**values, "colour": "red"})


def test_array_literals_read_back_as_the_values_they_were_built_from():
    from apps.core.fastpath import pg_array, pg_null, pg_text_array

    if connection.vendor != "postgresql":
        pytest.skip("array literals are PostgreSQL's")
    texts = ["plain", 'a "quoted" word', "back\\slash", "comma, brace } { and space", "", "NULL", "ünï ✓", None]
    numbers = ["1", pg_null(None), "-3", pg_null("")]
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::text[], %s::bigint[], %s::timestamptz[]",
                       [pg_text_array(texts), pg_array(numbers),
                        pg_array(["2026-11-30T05:10:27.123456+00:00", "2026-11-30T07:10:27+02:00"])])
        got_texts, got_numbers, got_times = cursor.fetchone()
    assert got_texts == texts
    assert got_numbers == [1, None, -3, None]
    assert got_times[0].isoformat() == "2026-11-30T05:10:27.123456+00:00" and got_times[1] == got_times[0].replace(microsecond=0)


@pytest.mark.parametrize("n", [1, COPY_MIN_ROWS])
def test_insert_rows_encodes_json_as_the_orm_does_whatever_the_row_count(tenant, n):
    """One row goes through the ORM, COPY_MIN_ROWS through COPY: the same JSON is stored, and a value
    the ORM's encoder refuses (a datetime in a field without an encoder) is refused by both."""
    from datetime import datetime, timezone

    from apps.core.fastpath import insert_rows

    columns = ("at", "actor_type", "actor_label", "action", "target_type", "target_id", "tenant_id", "data")
    now = clock.now()
    data = {"n": 1, "nested": [1, "two", None], 7: "int key", "text": "tab\tquote\"", "big": 2 ** 70}
    ids = insert_rows(AuditEvent, columns, [(now, "system", "s", "ok", "t", "1", tenant.pk, data)] * n)
    stored = {str(k): v for k, v in data.items()}  # JSON keys are strings; 2 ** 70 is beyond orjson's int range
    assert [AuditEvent.objects.get(pk=pk).data for pk in ids] == [stored] * n
    with pytest.raises(TypeError, match="not JSON serializable"), transaction.atomic():
        insert_rows(AuditEvent, columns, [(now, "system", "s", "bad", "t", "1", tenant.pk,
                                           {"when": datetime.now(timezone.utc)})] * n)
    assert not AuditEvent.objects.filter(action="bad").exists()
