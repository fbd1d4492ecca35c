"""Foreign keys without an index of their own (a composite index leading with the column serves
their lookups and cascades) or indexed only where set: each row write updates fewer indexes."""
from __future__ import annotations

import re

import pytest
from django.db import connection

from apps.alerts.models import Alert, TimelineEntry
from apps.audit.models import AuditEvent
from apps.delivery.models import Delivery, DeliveryAttempt
from apps.ingest.models import EventRecord
from apps.stream.models import StreamEvent
from apps.tenants.models import Plugin

pytestmark = [pytest.mark.django_db, pytest.mark.both_databases]

COVERED = [  # (model, column, the index that serves it)
    (Alert, "tenant_id", "alert_tenant_created"),
    (TimelineEntry, "alert_id", "timeline_alert_at"),
    (AuditEvent, "tenant_id", "audit_tenant_at"),
    (StreamEvent, "tenant_id", "stream_tenant_id"),
    (Delivery, "tenant_id", "delivery_tenant_created"),
    (Delivery, "alert_id", "delivery_alert"),
    (Delivery, "endpoint_id", "delivery_endpoint_recent"),
    (DeliveryAttempt, "delivery_id", "attempt_delivery_number"),
    (EventRecord, "tenant_id", "eventrecord_tenant_plugin_ts"),
    (Plugin, "tenant_id", "plugin_unique_slug_per_tenant"),
]


def _plan(cursor, table: str, where: str) -> str:
    """PostgreSQL's plan for ``SELECT * FROM table WHERE ..`` with sequential scans ruled out."""
    cursor.execute("SET LOCAL enable_seqscan = off")
    cursor.execute(f'EXPLAIN SELECT * FROM "{table}" WHERE {where}')
    return " ".join(row[0] for row in cursor.fetchall())


def _uses(plan: str, name: str) -> bool:
    return re.search(rf"\b(using|on) {re.escape(name)}\b", plan) is not None


@pytest.mark.parametrize(("model", "column", "index"), COVERED, ids=[f"{m.__name__}.{c}" for m, c, _ in COVERED])
def test_the_lookup_by_the_key_uses_the_composite_index(model, column, index):
    table = model._meta.db_table
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
        assert not [name for name, c in constraints.items() if c["index"] and c["columns"] == [column]]
        assert constraints[index]["columns"][0] == column
        if connection.vendor == "postgresql":
            plan = _plan(cursor, table, f'"{column}" = 1')
            # A partitioned table's index is one per partition, named after the partition.
            cursor.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                           "WHERE i.inhparent = %s::regclass", [index])
            names = [index] + [row[0] for row in cursor.fetchall()]
            assert any(_uses(plan, name) for name in names), plan


# Keys most rows leave empty: indexed only where set, so a row without one takes no index entry.
PARTIAL = [  # (model, column, the partial index)
    (Alert, "assignee_id", "alert_assignee"),
    (Alert, "silence_id", "alert_silence"),
    (TimelineEntry, "actor_user_id", "timeline_actor_user"),
    (Delivery, "source_id", "delivery_source"),
    (Delivery, "notification_channel_id", "delivery_channel"),
]


@pytest.mark.parametrize(("model", "column", "index"), PARTIAL, ids=[f"{m.__name__}.{c}" for m, c, _ in PARTIAL])
def test_a_key_most_rows_leave_empty_is_indexed_only_where_set(model, column, index):
    table = model._meta.db_table
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
        assert [name for name, c in constraints.items() if c["index"] and c["columns"] == [column]] == [index]
        if connection.vendor != "postgresql":
            return
        cursor.execute("SELECT pg_get_expr(indpred, indrelid) FROM pg_index WHERE indexrelid = %s::regclass", [index])
        assert cursor.fetchone()[0] == f"({column} IS NOT NULL)"
        # The lookups by the key and Django's SET_NULL on delete (`UPDATE .. WHERE col IN (..)`) imply
        # IS NOT NULL, so the planner may use the partial index for them.
        for where in (f'"{column}" = 1', f'"{column}" IN (1, 2)'):
            plan = _plan(cursor, table, where)
            assert _uses(plan, index), plan


@pytest.mark.parametrize(("model", "column"), [(Alert, "rule_key"), (Delivery, "msg_id")])
def test_text_keys_have_no_index_for_like(model, column):
    # Nothing filters rule keys or message ids by prefix: one btree each, no varchar_pattern_ops twin.
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, model._meta.db_table)
    # A unique constraint is its own index (introspection reports it as unique, not as an index).
    assert len([c for c in constraints.values() if (c["index"] or c["unique"]) and c["columns"] == [column]]) == 1


def test_message_ids_stay_unique(tenant):
    from django.db import IntegrityError, transaction

    from apps.core import clock

    now = clock.now()
    row = dict(tenant=tenant, event_type="alert.triggered", msg_id="msg_same", body=b"{}", created_at=now,
               expires_at=now)
    Delivery.objects.create(**row)
    with pytest.raises(IntegrityError), transaction.atomic():
        Delivery.objects.create(**row)
    assert Delivery.objects.filter(msg_id="msg_same").count() == 1
