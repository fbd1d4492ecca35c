"""Beat task for self-monitoring (``system.checks`` every minute, queue ``default``).

Thin: calls apps.rules.system_rules.run_system_checks, which isolates each check's failures.
Cron can run the same checks with ``manage.py system_checks`` when no worker is alive.
"""
from __future__ import annotations

from celery import shared_task

from .system_rules import run_system_checks


@shared_task(name="system.checks", ignore_result=True, acks_late=True)
def system_checks() -> dict[str, str]:
    return run_system_checks()
