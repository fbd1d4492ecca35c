"""``manage.py load_demo``: demo data for ``make run`` (apps.ops.demo); idempotent."""
from __future__ import annotations

from django.core.management.base import BaseCommand

from apps.ops.demo import load_demo


class Command(BaseCommand):
    help = "Load demo tenants, plugins, contacts, rules, webhooks and the demo operator (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--simulator-port", type=int, default=8001)
        parser.add_argument("--web-port", type=int, default=8000)

    def handle(self, *args, **options):
        load_demo(self.stdout, simulator_port=options["simulator_port"], web_port=options["web_port"])
