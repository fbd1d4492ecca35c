from __future__ import annotations

import socket

from celery import shared_task
from celery.signals import worker_ready

from . import clock
from .models import WorkerHeartbeat


def beat_heart(hostname: str | None = None) -> None:
    WorkerHeartbeat.objects.update_or_create(
        hostname=hostname or socket.gethostname(), defaults={"last_seen": clock.now()}
    )


@shared_task(name="core.heartbeat", ignore_result=True)
def heartbeat() -> None:
    """Record that a worker consumed a task just now (scheduled by beat)."""
    beat_heart(heartbeat.request.hostname)


@worker_ready.connect
def _heartbeat_on_start(sender=None, **kwargs) -> None:
    # Report at once instead of waiting for the first beat tick.
    beat_heart(getattr(sender, "hostname", None))
