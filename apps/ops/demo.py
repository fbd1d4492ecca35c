"""Demo data for ``make run`` (``manage.py load_demo``) and the names ``demo_traffic`` posts for.

Ops sits on top of the apps, so it calls each app's own demo loader directly: a loader that
moves or breaks fails the command loudly instead of being skipped.
"""
from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from apps.delivery.demo import load_demo as load_demo_webhooks
from apps.rules.demo import load_demo as load_demo_rules
from apps.tenants.models import FallbackContact, Plugin, Tenant

DEMO_LOGIN = ("demo", "demo-operator-pass")
DEMO_TENANTS = {
    "acme": ("Acme Corp", ["checkout", "search", "auth-gateway"]),
    "globex": ("Globex", ["billing", "reports"]),
}
# Each takes (stdout, **options) and is idempotent; rules first (webhooks need no rules, but the
# demo traffic does), then one webhook per demo tenant at the simulator.
APP_LOADERS = (load_demo_rules, load_demo_webhooks)


def load_demo(stdout: Any, **options: Any) -> None:
    """Tenants, plugins, fallback contacts, the demo operator, then every app's demo data.
    Idempotent: running it again changes nothing."""
    Tenant.objects.get_or_create(slug="platform", defaults={"name": "Alert Center platform", "is_platform": True})
    for slug, (name, plugins) in DEMO_TENANTS.items():
        tenant, _ = Tenant.objects.get_or_create(slug=slug, defaults={"name": name})
        for plugin in plugins:
            Plugin.objects.get_or_create(tenant=tenant, slug=plugin, defaults={"name": plugin.title()})
        if not tenant.fallback_contacts.exists():
            FallbackContact.objects.create(tenant=tenant, kind="email", value=f"oncall@{slug}.example")
            FallbackContact.objects.create(tenant=tenant, kind="sms", value="+14155550100")
    User = get_user_model()
    if not User.objects.filter(username=DEMO_LOGIN[0]).exists():
        user = User.objects.create_user(DEMO_LOGIN[0], password=DEMO_LOGIN[1], is_staff=True, is_superuser=True)
        user.groups.add(Group.objects.get_or_create(name="operators")[0])
    for loader in APP_LOADERS:
        loader(stdout, **options)
    stdout.write(f"demo data ready: {Tenant.objects.count()} tenants, {Plugin.objects.count()} plugins")
