from __future__ import annotations

from django.core.management.base import BaseCommand

from apps.core import clock
from apps.alerts.reconcile import reconcile

from apps.core.cli import parse_since


class Command(BaseCommand):
    help = ("Repair delivery bookkeeping: release deliveries stuck in SENDING, report the right delivery "
            "state for alerts whose state disagrees with their deliveries, and write deliveries missing "
            "for subscribed endpoints. Idempotent.")

    def add_arguments(self, parser):
        parser.add_argument("--since", default="24h", help="look at alerts/deliveries this recent (default 24h)")

    def handle(self, *args, **opts):
        r = reconcile(since=clock.now() - parse_since(opts["since"]))
        self.stdout.write(f"reconcile_alerts: released {r['stuck_released']} stuck deliveries, fixed "
                          f"{r['states_fixed']} alert delivery states, created {r['missing_created']} missing deliveries")
