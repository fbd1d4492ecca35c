"""``manage.py system_checks``: the self-monitoring and watchdog checks, once, from cron.

Beat runs the same checks every minute on a worker (``system.checks``, apps.ops.tasks); this command exists for
the case the watchdog is about: no worker alive to run them. Exit code 1 when a check errored.
"""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from apps.ops.self_monitoring import run_system_checks


class Command(BaseCommand):
    help = ("Run the self-monitoring checks (delivery success, downgrades, stuck pipeline, worker heartbeat) "
            "once; raises platform alerts for conditions that hold. Idempotent (alerts are deduplicated).")

    def handle(self, *args, **options):
        outcome = run_system_checks()
        self.stdout.write("system checks: " + ", ".join(f"{k}={v}" for k, v in outcome.items()))
        if any(v.startswith("error") for v in outcome.values()):
            raise CommandError("a system check failed (see the log)")
