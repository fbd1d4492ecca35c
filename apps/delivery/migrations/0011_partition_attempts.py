"""DeliveryAttempt partitioned by day of ``started_at`` on PostgreSQL, so the attempt log's retention
(DELIVERY_ATTEMPT_RETENTION_DAYS) drops a day's partition instead of deleting its rows one by one.

The same rebuild as ingest 0004 did for EventRecord: the table renamed aside with its indexes and
constraints; a partitioned table of the same columns under the original name (primary key
(id, started_at): a partitioned table's unique keys must hold its partition key; ids still come
from one identity sequence, so they stay unique); the indexes and the foreign key to the delivery
recreated under their names; one partition per day from the oldest attempt to a week ahead plus a
DEFAULT partition; the rows copied; the old table dropped. Nothing references attempts, so no
other table changes. ``apps.core.partitions`` keeps days ahead (beat, hourly) and drops old ones.

SQLite (the embedded ``make run``) keeps the plain table. The SQL is written out here, not imported,
so this migration stays what it was when it ran. Reverse: nothing to undo for Django's state (the
model is unchanged); the partitioned table keeps working under the previous migrations.
"""
from datetime import timedelta

from django.db import migrations

TABLE = "delivery_deliveryattempt"
OLD = "delivery_deliveryattempt_unpartitioned"
KEY = "started_at"
DAYS_AHEAD = 7


def partition(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexname <> %s",
                       [TABLE, f"{TABLE}_pkey"])
        indexes = cursor.fetchall()
        cursor.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                       "WHERE conrelid = %s::regclass AND contype IN ('f', 'c')", [TABLE])
        constraints = cursor.fetchall()
        cursor.execute(f"SELECT min({KEY})::date FROM {TABLE}")
        oldest = cursor.fetchone()[0]
        cursor.execute("SELECT (now() AT TIME ZONE 'UTC')::date")
        today = cursor.fetchone()[0]

        cursor.execute(f"ALTER TABLE {TABLE} RENAME TO {OLD}")
        cursor.execute(f"ALTER TABLE {OLD} RENAME CONSTRAINT {TABLE}_pkey TO {OLD}_pkey")
        for i, (name, _definition) in enumerate(indexes):
            cursor.execute(f'ALTER INDEX "{name}" RENAME TO "{OLD}_ix{i}"')
        for i, (name, _definition) in enumerate(constraints):
            cursor.execute(f'ALTER TABLE {OLD} RENAME CONSTRAINT "{name}" TO "{OLD}_c{i}"')

        # Defaults and identity only: the constraints are added back below under their own names.
        cursor.execute(f"CREATE TABLE {TABLE} (LIKE {OLD} INCLUDING DEFAULTS INCLUDING IDENTITY) "
                       f"PARTITION BY RANGE ({KEY})")
        cursor.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_pkey PRIMARY KEY (id, {KEY})")
        for _name, definition in indexes:
            # "CREATE INDEX name ON public.delivery_deliveryattempt USING ..." names the new table.
            cursor.execute(definition)
        for name, definition in constraints:
            cursor.execute(f'ALTER TABLE {TABLE} ADD CONSTRAINT "{name}" {definition}')

        day = min(oldest or today, today)
        while day <= today + timedelta(days=DAYS_AHEAD):
            after = day + timedelta(days=1)
            cursor.execute(f"CREATE TABLE IF NOT EXISTS {TABLE}_p{day:%Y%m%d} PARTITION OF {TABLE} "
                           f"FOR VALUES FROM ('{day.isoformat()} 00:00:00+00') TO ('{after.isoformat()} 00:00:00+00')")
            day = after
        cursor.execute(f"CREATE TABLE {TABLE}_default PARTITION OF {TABLE} DEFAULT")

        cursor.execute(f"INSERT INTO {TABLE} SELECT * FROM {OLD}")
        cursor.execute(f"SELECT setval(pg_get_serial_sequence('{TABLE}', 'id'), "
                       f"GREATEST((SELECT max(id) FROM {OLD}), 1))")
        cursor.execute(f"DROP TABLE {OLD}")


class Migration(migrations.Migration):
    atomic = True
    dependencies = [("delivery", "0010_parked_expiry_index")]
    operations = [migrations.RunPython(partition, migrations.RunPython.noop)]
