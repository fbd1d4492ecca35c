from django.db import migrations

# The three staff roles of DESIGN section 5. Permissions are attached by the apps that own the
# models (rules give governance their change permissions, and so on).
GROUPS = ("operators", "governance", "auditors")


def create_groups(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name in GROUPS:
        Group.objects.get_or_create(name=name)


class Migration(migrations.Migration):
    dependencies = [("tenants", "0001_initial"), ("auth", "0012_alter_user_first_name_max_length")]
    operations = [migrations.RunPython(create_groups, migrations.RunPython.noop)]
