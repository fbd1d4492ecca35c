"""Beat tasks of ops, queue ``default``. Their names are a contract with beat schedules and with
messages already queued: they keep the names they had before ops existed.

Thin: each calls one function that isolates its own failures; cron can run the same work with
``manage.py system_checks`` / ``manage.py purge_expired`` when no worker is alive.
"""
from __future__ import annotations

from celery import shared_task

from .retention import purge_expired
from .self_monitoring import run_system_checks


@shared_task(name="system.checks", ignore_result=True, acks_late=True)
def system_checks() -> dict[str, str]:
    """Self-monitoring and watchdog checks, every minute by beat."""
    return run_system_checks()


@shared_task(name="system.purge_expired", ignore_result=True, acks_late=True)
def purge_expired_task() -> dict[str, int]:
    """Retention, daily by beat; same as ``manage.py purge_expired``."""
    return purge_expired().removed
