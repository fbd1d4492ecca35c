"""Drop the single-column indexes of foreign keys that a composite index already leads with, and
leave room in alert pages so the updates that touch no indexed column (the delivery state, new
occurrences) can stay on the page (HOT) instead of writing every one of the alert's indexes again."""

import django.db.models.deletion
from django.db import migrations, models


def _fillfactor(value: int):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":  # SQLite has no such setting
            schema_editor.execute(f"ALTER TABLE alerts_alert SET (fillfactor = {value})")
    return run


class Migration(migrations.Migration):

    dependencies = [
        ('alerts', '0005_alert_sources'),
        ('tenants', '0004_oncall_rotations_contact_methods'),
    ]

    operations = [
        migrations.AlterField(
            model_name='alert',
            name='tenant',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='alerts', to='tenants.tenant'),
        ),
        migrations.AlterField(
            model_name='timelineentry',
            name='alert',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='timeline', to='alerts.alert'),
        ),
        migrations.RunPython(_fillfactor(85), _fillfactor(100)),
    ]
