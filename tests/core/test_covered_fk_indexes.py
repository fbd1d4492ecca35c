"""Foreign keys without an index of their own: a composite index leading with the column serves
their lookups (and the cascades that delete by them), so each row write updates one index less."""
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


@pytest.mark.parametrize(("model", "column", "index"), COVERED, ids=[f"{m.__name__}.{c}" for m, c, _ in COVERED])
def test_the_lookup_by_the_key_uses_the_composite_index(model, column, index):
    table = model._meta.db_table
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
        assert not [name for name, c in constraints.items() if c["index"] and c["columns"] == [column]]
        assert constraints[index]["columns"][0] == column
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute(f'EXPLAIN SELECT * FROM "{table}" WHERE "{column}" = 1')
            plan = " ".join(row[0] for row in cursor.fetchall())
            # A partitioned table's index is one per partition, named after the partition.
            cursor.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                           "WHERE i.inhparent = %s::regclass", [index])
            names = [index] + [row[0] for row in cursor.fetchall()]
            assert any(re.search(rf"\b(using|on) {re.escape(name)}\b", plan) for name in names), plan
