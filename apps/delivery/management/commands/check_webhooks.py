from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError

from apps.delivery.maintenance import check_endpoints
from apps.tenants.models import Tenant


class Command(BaseCommand):
    help = ("Self-test every enabled webhook endpoint (a signed webhook.test event); one line per endpoint. "
            "Exits 1 when any endpoint fails, so cron can alert on it.")

    def add_arguments(self, parser):
        parser.add_argument("--tenant", help="only this tenant (slug)")

    def handle(self, *args, **opts):
        if opts["tenant"] and not Tenant.objects.filter(slug=opts["tenant"]).exists():
            raise CommandError(f"no tenant {opts['tenant']!r}")
        results = check_endpoints(tenant_slug=opts["tenant"])
        failed = 0
        for endpoint, r in results:
            failed += not r.ok
            status = "ok" if r.ok else f"FAILED: {r.error}"
            self.stdout.write(f"  {endpoint.tenant.slug} #{endpoint.pk} {endpoint.url} -> "
                              f"{r.status_code or '-'} in {r.latency_ms} ms {status}")
        self.stdout.write(f"check_webhooks: {len(results) - failed} ok, {failed} failed")
        if failed:
            sys.exit(1)
