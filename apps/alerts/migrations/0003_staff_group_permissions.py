"""Model permissions of the staff groups (created in tenants 0002) on the alerts models.

operators: work alerts (change alert) and manage silences; governance: read alerts, manage
escalation policies (their rule permissions are granted by the rules app); auditors: read only.
Permissions are created here first because Django only creates them after all migrations ran.
"""
from django.contrib.auth.management import create_permissions
from django.db import migrations

MODELS = ("alert", "timelineentry", "silence", "escalationpolicy")
VIEW_ALL = [f"view_{m}" for m in MODELS]
GRANTS = {
    "operators": VIEW_ALL + ["change_alert", "add_silence", "change_silence"],
    "governance": VIEW_ALL + ["add_escalationpolicy", "change_escalationpolicy", "delete_escalationpolicy"],
    "auditors": VIEW_ALL,
}


def grant(apps, schema_editor):
    app_config = apps.get_app_config("alerts")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in GRANTS.items():
        group, _ = Group.objects.get_or_create(name=name)
        perms = Permission.objects.filter(content_type__app_label="alerts", codename__in=codenames)
        group.permissions.add(*perms)


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    perms = Permission.objects.filter(content_type__app_label="alerts")
    for group in Group.objects.filter(name__in=GRANTS):
        group.permissions.remove(*perms)


class Migration(migrations.Migration):
    dependencies = [
        ("alerts", "0002_alert_lifecycle_fields"),
        ("tenants", "0002_staff_groups"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(grant, revoke)]
