"""Room on each page of alerts, so rewriting an alert's delivery state is a HOT update.

A new alert is written once and then updated at least twice by delivery alone (its delivery
state: pending, then delivered). None of those columns is indexed, but with full pages each
update still went to another page and added an entry to all 17 indexes of the table, the two
trigram GIN indexes of title and summary among them (bench/storm.py: 72% of alert updates were
not HOT). With 30% of each page free, such an update stays on its page and touches no index.
PostgreSQL only (SQLite has no fillfactor); existing pages keep their layout until rewritten.
"""
from django.db import migrations

TABLE = "alerts_alert"


def _set_fillfactor(value: int | None):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        if value is None:
            schema_editor.execute(f'ALTER TABLE "{TABLE}" RESET (fillfactor)')
        else:
            schema_editor.execute(f'ALTER TABLE "{TABLE}" SET (fillfactor = {value})')
    return run


class Migration(migrations.Migration):

    dependencies = [
        ('alerts', '0007_opened_count'),
    ]

    operations = [
        migrations.RunPython(_set_fillfactor(70), _set_fillfactor(None)),
    ]
