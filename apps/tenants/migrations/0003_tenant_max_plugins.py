from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tenants", "0002_staff_groups")]
    operations = [
        migrations.AddField(
            model_name="tenant",
            name="max_plugins",
            field=models.PositiveIntegerField(
                blank=True, null=True, help_text="Most plugins this tenant may have; empty: TENANT_MAX_PLUGINS"),
        ),
    ]
