"""Beat tasks of ops, queue ``default``. Their names are a contract with beat schedules and with
messages already queued: they keep the names they had before ops existed.

Thin: each calls one function that isolates its own failures; cron can run the same work with
``manage.py system_checks`` / ``manage.py purge_expired`` when no worker is alive.
"""
from __future__ import annotations

from celery import shared_task

from apps.core import clock

from .retention import ensure_partitions, purge_expired
from .self_monitoring import run_system_checks


@shared_task(name="system.checks", ignore_result=True, acks_late=True)
def system_checks() -> dict[str, str]:
    """Self-monitoring and watchdog checks, every minute by beat."""
    return run_system_checks()


@shared_task(name="system.purge_expired", ignore_result=True, acks_late=True)
def purge_expired_task() -> dict[str, int]:
    """Retention, daily by beat; same as ``manage.py purge_expired``."""
    return purge_expired().removed


def _ensure_partitions() -> int:
    """Beat, hourly: the day partitions a week ahead exist (PostgreSQL; a no-op elsewhere)."""
    return len(ensure_partitions(clock.now().date()))


partitions_task = shared_task(name="system.partitions", ignore_result=True)(_ensure_partitions)
# The name an earlier release's beat sends (that task made only the event table's days).
partitions_task_by_old_name = shared_task(name="ingest.partitions", ignore_result=True)(_ensure_partitions)
