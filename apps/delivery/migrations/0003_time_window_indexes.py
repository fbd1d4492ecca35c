"""Indexes for the /metrics success-rate windows (attempts started, notifications created in the
last 15 min / 24 h), so a scrape reads the window and not the whole history (apps.ops.figures).

On PostgreSQL they are BRIN indexes: both tables are appended in time order, so a block range
summary finds a window's blocks at a few kilobytes of index and almost no cost per insert (a
B-tree would add a page write to every attempt and delivery). SQLite (the embedded ``make run``)
has no BRIN: a plain index there. Not declared on the models, which cannot say "BRIN here,
B-tree there"; dropping them is this migration's reverse."""
from django.db import migrations

INDEXES = (("attempt_started_window", "delivery_deliveryattempt", "started_at"),
           ("delivery_created_window", "delivery_delivery", "created_at"))


def create(apps, schema_editor):
    brin = schema_editor.connection.vendor == "postgresql"
    for name, table, column in INDEXES:
        using = " USING brin" if brin else ""
        schema_editor.execute(f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}"{using} ("{column}")')


def drop(apps, schema_editor):
    for name, _table, _column in INDEXES:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')


class Migration(migrations.Migration):
    dependencies = [("delivery", "0002_notification_channels_policies")]
    operations = [migrations.RunPython(create, drop)]
