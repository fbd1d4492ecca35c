"""Demo data for ``make run``: tenants, plugins, fallback contacts and a console login.

Idempotent: running it again changes nothing. Apps that arrive later (rules, webhooks) add their
own demo data through the ``demo_loaders`` hook below.
"""
from __future__ import annotations

import importlib

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand

from apps.tenants.models import FallbackContact, Plugin, Tenant

from .runstack import DEMO_LOGIN

DEMO_TENANTS = {
    "acme": ("Acme Corp", ["checkout", "search", "auth-gateway"]),
    "globex": ("Globex", ["billing", "reports"]),
}
# Later apps register a ``load_demo(stdout, **options)`` function in these modules.
DEMO_LOADERS = ("apps.rules.demo", "apps.delivery.demo", "apps.ingest.demo")


class Command(BaseCommand):
    help = "Load demo tenants, plugins, contacts and the demo operator (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--simulator-port", type=int, default=8001)
        parser.add_argument("--web-port", type=int, default=8000)

    def handle(self, *args, **options):
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
        for module_name in DEMO_LOADERS:
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name != module_name:  # a real import error inside the loader must surface
                    raise
                continue
            module.load_demo(self.stdout, **options)
        self.stdout.write(f"demo data ready: {Tenant.objects.count()} tenants, {Plugin.objects.count()} plugins")
