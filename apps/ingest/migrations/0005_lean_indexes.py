"""Stored events: no index of their own on ``tenant`` (``eventrecord_tenant_plugin_ts`` starts with
it) nor on ``batch`` (nothing reads events by batch), no database constraint on ``tenant`` and
``plugin`` (see the model); batch payloads compressed with lz4.

Every kept event pays for each index of its day partition and, at commit, for a query per foreign
key constraint; intake writes more of these rows than of anything else. A batch payload (~150 KB
for 1,000 events) is TOASTed and compressed on insert: pglz took ~2-2.7 ms of PostgreSQL CPU per
batch, lz4 ~0.45 ms, for ~9% more bytes (measured on the 2-core box, 20 payloads of
bench/ingest.py's traffic). PostgreSQL 14+ built with lz4 only (Debian's is); elsewhere the
column keeps the server's default compression.
"""
import django.db.models.deletion
from django.db import migrations, models

TABLE = "ingest_ingestbatch"


def _set_compression(method: str):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        with schema_editor.connection.cursor() as cursor:
            cursor.execute("SELECT %s = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'",
                           [method])
            row = cursor.fetchone()
        if row and row[0]:
            schema_editor.execute(f'ALTER TABLE "{TABLE}" ALTER COLUMN "payload" SET COMPRESSION {method}')
    return run


class Migration(migrations.Migration):

    dependencies = [
        ('ingest', '0004_partition_event_records'),
        ('tenants', '0004_oncall_rotations_contact_methods'),
    ]

    operations = [
        migrations.AlterField(
            model_name='eventrecord',
            name='batch',
            field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='ingest.ingestbatch'),
        ),
        migrations.AlterField(
            model_name='eventrecord',
            name='plugin',
            field=models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='tenants.plugin'),
        ),
        migrations.AlterField(
            model_name='eventrecord',
            name='tenant',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='tenants.tenant'),
        ),
        migrations.RunPython(_set_compression("lz4"), _set_compression("pglz")),
    ]
