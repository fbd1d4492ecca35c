"""Fewer index entries per delivery (issue 15): every delivery is written three times (created,
claimed, recorded) and none of those writes can be HOT (each changes ``state``, which the sweeper's
partial indexes depend on), so each write adds an entry to every index of the table.

- ``msg_id``: unique by a constraint (``delivery_msg_id_unique``), without the
  ``varchar_pattern_ops`` index ``unique=True`` adds for LIKE, which nothing runs on message ids.
- ``source`` and ``notification_channel``: indexed only where set. A webhook delivery has neither
  and a partial index takes no entry for it; ``col = x`` and ``col IN (..)``, the lookups and the
  SET_NULL on delete, imply ``IS NOT NULL`` and use it.

Django drops and re-adds each foreign key to change its index, which checks the key over the whole
table: on a large installation run it in a quiet hour.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('alerts', '0009_lean_indexes'),
        ('delivery', '0004_drop_covered_fk_indexes'),
        ('tenants', '0005_drop_covered_plugin_tenant_index'),
    ]

    operations = [
        migrations.AlterField(
            model_name='delivery',
            name='msg_id',
            field=models.CharField(max_length=64),
        ),
        migrations.AlterField(
            model_name='delivery',
            name='notification_channel',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='deliveries', to='delivery.notificationchannel'),
        ),
        migrations.AlterField(
            model_name='delivery',
            name='source',
            field=models.ForeignKey(blank=True, db_index=False, help_text='For a fallback email/SMS: the webhook delivery that was downgraded', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='fallbacks', to='delivery.delivery'),
        ),
        migrations.AddIndex(
            model_name='delivery',
            index=models.Index(condition=models.Q(('source__isnull', False)), fields=['source'], name='delivery_source'),
        ),
        migrations.AddIndex(
            model_name='delivery',
            index=models.Index(condition=models.Q(('notification_channel__isnull', False)), fields=['notification_channel'], name='delivery_channel'),
        ),
        migrations.AddConstraint(
            model_name='delivery',
            constraint=models.UniqueConstraint(fields=('msg_id',), name='delivery_msg_id_unique'),
        ),
    ]
