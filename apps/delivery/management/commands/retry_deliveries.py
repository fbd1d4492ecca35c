from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from apps.core import clock
from apps.delivery.services import retry_deliveries
from apps.tenants.models import Tenant

from apps.core.cli import parse_since


class Command(BaseCommand):
    help = ("Make FAILED and DOWNGRADED deliveries due again now, with a fresh retry window "
            "(rows of deleted or disabled endpoints are skipped; rows of an endpoint still downgraded "
            "get the fresh window and wait for its probe). Idempotent.")

    def add_arguments(self, parser):
        parser.add_argument("--since", default="24h", help="only deliveries created this recently (default 24h)")
        parser.add_argument("--tenant", help="only this tenant (slug)")
        parser.add_argument("--dry-run", action="store_true", help="count, change nothing")

    def handle(self, *args, **opts):
        if opts["tenant"] and not Tenant.objects.filter(slug=opts["tenant"]).exists():
            raise CommandError(f"no tenant {opts['tenant']!r}")
        since = clock.now() - parse_since(opts["since"])
        r = retry_deliveries(since=since, tenant_slug=opts["tenant"], dry_run=opts["dry_run"])
        verb = "would retry" if opts["dry_run"] else "retried"
        self.stdout.write(f"retry_deliveries: {verb} {r['found'] if opts['dry_run'] else r['retried']} "
                          f"deliveries, skipped {r['skipped']} (endpoint deleted or disabled)")
