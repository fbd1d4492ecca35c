"""Trigram indexes for alert search (API `q=` and the console search box).

Django's ``icontains`` becomes ``UPPER(col) LIKE UPPER('%term%')``; GIN indexes over
``UPPER(col) gin_trgm_ops`` let PostgreSQL answer it without scanning every alert. pg_trgm is a
trusted extension (PostgreSQL 13+): a database owner may create it. SQLite (the embedded demo)
keeps the plain scan.
"""
from django.db import migrations

FORWARD = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS alert_title_trgm ON alerts_alert USING gin (UPPER(title::text) gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS alert_summary_trgm ON alerts_alert USING gin (UPPER(summary::text) gin_trgm_ops)",
]
BACKWARD = ["DROP INDEX IF EXISTS alert_title_trgm", "DROP INDEX IF EXISTS alert_summary_trgm"]


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for sql in FORWARD:
            schema_editor.execute(sql, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for sql in BACKWARD:
            schema_editor.execute(sql, params=None)


class Migration(migrations.Migration):
    dependencies = [("alerts", "0003_staff_group_permissions")]
    operations = [migrations.RunPython(forwards, backwards)]
