"""Deliver tasks: thin, stable names, ids in, quiet when rows are gone (claims decide who works)."""
from __future__ import annotations

from celery import shared_task, signals
from django.conf import settings

from . import dispatch, grouping, stragglers


@shared_task(name="deliver.attempt", ignore_result=True, acks_late=True)
def deliver_attempt(delivery_id: int) -> None:
    """First attempt of one delivery (the outbox's doorbell). No-op if it is gone, done or held."""
    dispatch.process([delivery_id], straggler_wait=settings.DELIVERY_STRAGGLER_SECONDS)


@shared_task(name="deliver.batch", ignore_result=True, acks_late=True)
def deliver_batch(delivery_ids: list[int], claim_token: str | None = None) -> None:
    """Attempt several deliveries; ``claim_token`` when the sweeper already claimed them."""
    dispatch.process(delivery_ids, claim_token, straggler_wait=settings.DELIVERY_STRAGGLER_SECONDS)


@shared_task(name="deliver.sweep", ignore_result=True)
def deliver_sweep() -> None:
    """Beat, every few seconds: claim due and stuck deliveries and enqueue them; send due groups."""
    dispatch.sweep()
    grouping.flush_due()


@signals.worker_process_shutdown.connect(weak=False)
def _record_stragglers_before_exit(**_) -> None:
    """A stopping worker process records its sends still running (each ends by its own deadline)
    instead of leaving them to the lease."""
    stragglers.drain(timeout=max(settings.WEBHOOK_TIMEOUT_SECONDS, settings.CHANNEL_TIMEOUT_SECONDS) + 5)
