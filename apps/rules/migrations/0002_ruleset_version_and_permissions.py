"""The single RulesetVersion row, and the staff groups' permissions on rules.

governance edits rules (add/change/view; rules are disabled, never deleted) and overrides;
auditors and operators read. Permissions are created here first because Django only creates
them after all migrations ran (see alerts 0003).
"""
from django.contrib.auth.management import create_permissions
from django.db import migrations

MODELS = ("logrule", "ruleoverride", "rulerevision")
VIEW_ALL = [f"view_{m}" for m in MODELS]
GRANTS = {
    "governance": VIEW_ALL + ["add_logrule", "change_logrule", "add_ruleoverride", "change_ruleoverride",
                              "delete_ruleoverride"],
    "auditors": VIEW_ALL,
    "operators": VIEW_ALL,
}


def forwards(apps, schema_editor):
    apps.get_model("rules", "RulesetVersion").objects.get_or_create(pk=1, defaults={"version": 0})
    app_config = apps.get_app_config("rules")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in GRANTS.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*Permission.objects.filter(content_type__app_label="rules", codename__in=codenames))


def backwards(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    perms = Permission.objects.filter(content_type__app_label="rules")
    for group in Group.objects.filter(name__in=GRANTS):
        group.permissions.remove(*perms)


class Migration(migrations.Migration):
    dependencies = [
        ("rules", "0001_initial"),
        ("tenants", "0002_staff_groups"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(forwards, backwards)]
