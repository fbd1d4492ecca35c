"""EventRecord partitioned by day of ``received_at`` on PostgreSQL, so retention drops a day's
partition instead of deleting its rows one by one (no dead tuples, no vacuum debt, no WAL per row).

The table is rebuilt: renamed aside with its indexes and constraints, a partitioned table of the
same columns made under the original name (primary key (id, received_at): a partitioned table's
unique keys must hold its partition key; ids still come from one identity sequence, so they stay
unique), the same indexes and foreign keys recreated under their original names, one partition per
day from the oldest stored event to a week ahead plus a DEFAULT partition, the rows copied, the old
table dropped. ``apps.core.partitions`` keeps creating days ahead (beat, hourly) and drops the
days retention is done with.

SQLite (the embedded ``make run``) keeps the plain table. The SQL is written out here, not imported,
so this migration stays what it was when it ran. Reverse: nothing to undo for Django's state (the
model is unchanged); the partitioned table keeps working under the previous migrations.
"""
from datetime import date, timedelta

from django.db import migrations

TABLE = "ingest_eventrecord"
OLD = "ingest_eventrecord_unpartitioned"
DAYS_AHEAD = 7


def partition(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexname <> %s",
                       [TABLE, f"{TABLE}_pkey"])
        indexes = cursor.fetchall()
        cursor.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                       "WHERE conrelid = %s::regclass AND contype = 'f'", [TABLE])
        foreign_keys = cursor.fetchall()
        cursor.execute(f"SELECT min(received_at)::date FROM {TABLE}")
        oldest = cursor.fetchone()[0]
        cursor.execute("SELECT (now() AT TIME ZONE 'UTC')::date")
        today = cursor.fetchone()[0]

        cursor.execute(f"ALTER TABLE {TABLE} RENAME TO {OLD}")
        cursor.execute(f"ALTER TABLE {OLD} RENAME CONSTRAINT {TABLE}_pkey TO {OLD}_pkey")
        for i, (name, _definition) in enumerate(indexes):
            cursor.execute(f'ALTER INDEX "{name}" RENAME TO "{OLD}_ix{i}"')
        for i, (name, _definition) in enumerate(foreign_keys):
            cursor.execute(f'ALTER TABLE {OLD} RENAME CONSTRAINT "{name}" TO "{OLD}_fk{i}"')

        cursor.execute(f"CREATE TABLE {TABLE} (LIKE {OLD} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
                       f"INCLUDING IDENTITY) PARTITION BY RANGE (received_at)")
        cursor.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_pkey PRIMARY KEY (id, received_at)")
        for name, definition in indexes:
            # "CREATE INDEX name ON public.ingest_eventrecord USING ..." names the new table again.
            cursor.execute(definition)
        for name, definition in foreign_keys:
            cursor.execute(f'ALTER TABLE {TABLE} ADD CONSTRAINT "{name}" {definition}')

        day = min(oldest or today, today)
        while day <= today + timedelta(days=DAYS_AHEAD):
            _create_day(cursor, day)
            day += timedelta(days=1)
        cursor.execute(f"CREATE TABLE {TABLE}_default PARTITION OF {TABLE} DEFAULT")

        cursor.execute(f"INSERT INTO {TABLE} SELECT * FROM {OLD}")
        cursor.execute(f"SELECT setval(pg_get_serial_sequence('{TABLE}', 'id'), "
                       f"GREATEST((SELECT max(id) FROM {OLD}), 1))")
        cursor.execute(f"DROP TABLE {OLD}")


def _create_day(cursor, day: date) -> None:
    cursor.execute(f"CREATE TABLE IF NOT EXISTS {TABLE}_p{day:%Y%m%d} PARTITION OF {TABLE} "
                   f"FOR VALUES FROM ('{day.isoformat()} 00:00:00+00') TO ('{(day + timedelta(days=1)).isoformat()} 00:00:00+00')")


class Migration(migrations.Migration):
    atomic = True
    dependencies = [("ingest", "0003_heartbeat")]
    operations = [migrations.RunPython(partition, migrations.RunPython.noop)]
