"""On PostgreSQL, refuse TRUNCATE of the audit table too.

Row triggers (0002) do not fire on TRUNCATE, so a statement-level BEFORE TRUNCATE trigger is
needed. The retention purge deletes rows (it never truncates), so it is unaffected. TRUNCATE passes
only where ``alertcenter.audit_truncate`` is ``on``: the test suite sets it on its throwaway
database (Django's flush between transactional tests truncates every table); nothing sets it in
production. SQLite, the embedded demo database, has no TRUNCATE.
"""
from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION audit_event_no_truncate() RETURNS trigger AS $$
BEGIN
    IF current_setting('alertcenter.audit_truncate', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audit_auditevent is append-only: TRUNCATE refused'
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_auditevent;
CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION audit_event_no_truncate();
"""
DROP = """
DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_auditevent;
DROP FUNCTION IF EXISTS audit_event_no_truncate();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only_trigger")]
    operations = [migrations.RunPython(forwards, backwards)]
