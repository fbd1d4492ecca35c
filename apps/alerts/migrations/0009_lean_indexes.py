"""Fewer index entries per alert and timeline line (issue 15).

- ``rule_key``: one plain btree (``alert_rule_key``) instead of ``db_index=True``'s pair, whose
  ``varchar_pattern_ops`` twin serves LIKE, which nothing runs on rule keys.
- ``assignee``, ``silence`` (alerts) and ``actor_user`` (timeline): indexed only where set. Most
  rows have none (system changes, unassigned alerts, alerts under no silence) and a partial index
  takes no entry for them; ``col = x`` and ``col IN (..)``, the lookups and the SET_NULL on delete,
  imply ``IS NOT NULL`` and use it.

Django drops and re-adds each foreign key to change its index, which checks the key over the whole
table: on a large installation run it in a quiet hour.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('alerts', '0008_alert_fillfactor'),
        ('tenants', '0005_drop_covered_plugin_tenant_index'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name='alert',
            name='assignee',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='assigned_alerts', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AlterField(
            model_name='alert',
            name='rule_key',
            field=models.CharField(blank=True, max_length=100),
        ),
        migrations.AlterField(
            model_name='alert',
            name='silence',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='alerts', to='alerts.silence'),
        ),
        migrations.AlterField(
            model_name='timelineentry',
            name='actor_user',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddIndex(
            model_name='alert',
            index=models.Index(fields=['rule_key'], name='alert_rule_key'),
        ),
        migrations.AddIndex(
            model_name='alert',
            index=models.Index(condition=models.Q(('assignee__isnull', False)), fields=['assignee'], name='alert_assignee'),
        ),
        migrations.AddIndex(
            model_name='alert',
            index=models.Index(condition=models.Q(('silence__isnull', False)), fields=['silence'], name='alert_silence'),
        ),
        migrations.AddIndex(
            model_name='timelineentry',
            index=models.Index(condition=models.Q(('actor_user__isnull', False)), fields=['actor_user'], name='timeline_actor_user'),
        ),
    ]
