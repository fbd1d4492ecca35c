"""Celery tasks of the ingest pipeline (queue ``detect`` by their ``detect.`` names)."""
from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from apps.core.gc_pause import gc_paused
from apps.delivery.dispatch import send_claimed
from apps.delivery.outbox import first_attempts_here

from .heartbeats.services import sweep_missed
from .processing import pending_batches_due, process_batch

logger = logging.getLogger(__name__)


@shared_task(name="detect.batch", acks_late=True, ignore_result=True)
def detect_batch(batch_id: int) -> None:
    """Detect one stored batch, then send the first attempts of the webhook deliveries it wrote
    (DELIVERY_SEND_FROM_DETECT; ``apps.delivery.outbox.first_attempts_here``). No Celery retries: a
    failed batch stays PENDING and the sweeper re-enqueues it, so retries survive a flushed broker too."""
    # The collector stays off until the first attempts that finished within the straggler wait are
    # recorded, not only over detection: turned on in between, it ran at once, walking the batch's
    # alerts and rows still held for the sends (bench/storm.py, gc callbacks: ~0.1 s of each worker
    # process's ~8 s at N = 10,000).
    with gc_paused(), first_attempts_here() as first:
        try:
            process_batch(batch_id=batch_id)
        finally:  # what committed goes out, even if something after the commit raised
            if first is not None:
                send_claimed(first.rows, straggler_wait=settings.DELIVERY_STRAGGLER_SECONDS)


@shared_task(name="detect.sweep", ignore_result=True)
def sweep_batches() -> int:
    """Re-enqueue PENDING batches whose doorbell was lost (beat, every few seconds)."""
    ids = pending_batches_due()
    for batch_id in ids:
        detect_batch.delay(batch_id)
    if ids:
        logger.warning("detect: re-enqueued stale batches", extra={"count": len(ids), "oldest_batch_id": ids[0]})
    return len(ids)


@shared_task(name="heartbeats.sweep", ignore_result=True)
def sweep_heartbeats() -> int:
    """Raise the alerts of missed heartbeats (beat, every 15 s; each heartbeat is claimed)."""
    return sweep_missed()
