"""Detect one stored batch, exactly once (DESIGN 3.3), with the log batches waiting behind it.

One transaction: claim the PENDING batch with ``FOR UPDATE SKIP LOCKED``, run the rules engine
(which updates the window rows and fires alerts in this same transaction), store the kept
events, mark the batch DONE. Whatever happens, either all of it commits or none of it does, so
the window counts of a batch are applied exactly once even if its doorbell rings twice or the
worker is killed half-way (the batch stays PENDING and the sweeper re-enqueues it).
Under a backlog a task takes along up to DETECT_COALESCE_BATCHES - 1 more PENDING log batches,
received within ``COALESCE_SPREAD`` of its own, claimed the same way (SKIP LOCKED) and detected and
marked DONE in the same transaction: a storm's per-batch statements, commit and recording are shared
(bench/storm.py, against first sends from detect alone: CPU per alert -13 to -25 % in the worker and
-13 to -24 % in PostgreSQL, and 1,000 new alerts/s sustained without a growing backlog).
Batches from Alertmanager, Grafana and the event API take the same claim and transaction; their
entries fire and resolve alerts (``integrations.apply``) instead of going through the rules.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q

from apps.core import clock
from apps.core.gc_pause import gc_paused

from . import tenancy
from .codec import decode_events
from .fastpath import CLAIMED_FIELDS, claim_pending_batch
from .models import BatchKind, BatchStatus, IngestBatch
from .storage import register_plugins, store_events

logger = logging.getLogger(__name__)

# After this many failed runs a batch is marked FAILED instead of being swept forever.
MAX_ATTEMPTS = 5
SWEEP_LIMIT = 500
# Batches of alerts and events from other systems (apps.ingest.integrations); the rest are logs.
_INBOUND_KINDS = (BatchKind.ALERTMANAGER, BatchKind.GRAFANA, BatchKind.EVENTS)


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    batch_id: int
    events: int
    stored: int
    matched: int
    alerts_fired: int
    batches: int = 1  # with the batches taken along (DETECT_COALESCE_BATCHES)


def process_batch(*, batch_id: int) -> BatchOutcome | None:
    """Detect and store batch ``batch_id``, with up to DETECT_COALESCE_BATCHES - 1 log batches waiting
    behind it (``_waiting``); None when it is done, failed, gone or being worked.

    Failure policy: any exception rolls everything back. Batches taken along are then left to their
    own tasks and ``batch_id`` is run again alone, so a batch that cannot be processed fails only
    itself; its own failure is counted on it (``attempts``, ``error``; FAILED after MAX_ATTEMPTS)
    and re-raised, and the sweeper retries.
    """
    coalesce = settings.DETECT_COALESCE_BATCHES
    if coalesce > 1:
        try:
            return _process(batch_id, coalesce)
        except _TakenAlongFailed as exc:
            logger.warning("detect: batches taken along failed together; running the batch alone",
                           extra={"batch_id": batch_id, "with": exc.others, "error": str(exc.__cause__)[:500]})
    return _process(batch_id, 1)


class _TakenAlongFailed(Exception):
    def __init__(self, others: list[int]) -> None:
        super().__init__(others)
        self.others = others


# Batches taken along were received within this much of the task's own: the window is evaluated at
# the newest one's received_at, so an older batch's events are judged at most this much later.
COALESCE_SPREAD = timedelta(seconds=1)


def _waiting(batch: IngestBatch, limit: int) -> list[IngestBatch]:
    """Up to ``limit`` other PENDING log batches received within COALESCE_SPREAD of ``batch``, oldest
    first, locked in the caller's transaction; those another worker holds are skipped, not awaited."""
    return list(IngestBatch.objects.select_for_update(skip_locked=True)
                .filter(status=BatchStatus.PENDING, kind=BatchKind.LOGS,
                        received_at__range=(batch.received_at - COALESCE_SPREAD, batch.received_at + COALESCE_SPREAD))
                .exclude(pk=batch.pk).order_by("received_at", "pk").only(*CLAIMED_FIELDS)[:limit])


def _process(batch_id: int, coalesce: int) -> BatchOutcome | None:
    from apps.rules.engine import detect  # ingest -> rules (DESIGN 1); imported late: heavy

    others: list[int] = []
    try:
        with gc_paused(), transaction.atomic():  # bounded: a few batches (apps.core.gc_pause)
            batch = claim_pending_batch(batch_id)
            if batch is None:
                return None
            if batch.kind in _INBOUND_KINDS:
                return _process_inbound(batch)
            if batch.kind != BatchKind.LOGS:
                raise ValueError(f"batch kind {batch.kind!r} has no processor")
            batches = [batch, *(_waiting(batch, coalesce - 1) if coalesce > 1 else [])]
            others = [b.pk for b in batches[1:]]
            per_batch = [decode_events(b.payload) for b in batches]
            events = [e for chunk in per_batch for e in chunk]
            register_plugins(events)
            result = detect(events, received_at=max(b.received_at for b in batches))
            stored, offset = 0, 0
            for b, chunk in zip(batches, per_batch):
                matched = {i - offset: keys for i, keys in result.matched.items() if offset <= i < offset + len(chunk)}
                stored += store_events(batch_id=b.pk, received_at=b.received_at, events=chunk, matched=matched)
                offset += len(chunk)
            # The payloads have served their purpose: kept events are EventRecords now.
            IngestBatch.objects.filter(pk__in=[b.pk for b in batches]).update(
                status=BatchStatus.DONE, processed_at=clock.now(), payload=b"", error="")
    except Exception as exc:
        if isinstance(exc, IntegrityError):
            # Most likely a tenant or plugin id cached in this process went stale (deleted,
            # perhaps re-created): the retry reads them afresh.
            tenancy.clear_caches()
        if others:
            raise _TakenAlongFailed(others) from exc
        _record_failure(batch_id, exc)
        raise
    outcome = BatchOutcome(batch_id=batch_id, events=len(events), stored=stored,
                           matched=len(result.matched), alerts_fired=result.alerts_fired, batches=len(batches))
    logger.info("detect: batch done", extra={
        "batch_id": batch_id, "events": outcome.events, "stored": stored, "matched": outcome.matched,
        "alerts_fired": outcome.alerts_fired, **({"with": others} if others else {})})
    return outcome


def _process_inbound(batch: IngestBatch) -> BatchOutcome:
    """Apply an Alertmanager/Grafana/events batch (``integrations.apply``) in the caller's
    transaction, and mark it DONE in it."""
    from .integrations.apply import apply_entries
    from .integrations.entries import decode_entries

    entries = decode_entries(batch.payload)
    applied = apply_entries(tenant_id=batch.tenant_id, entries=entries, received_at=batch.received_at)
    IngestBatch.objects.filter(pk=batch.pk).update(
        status=BatchStatus.DONE, processed_at=clock.now(), payload=b"", error="")
    logger.info("detect: inbound batch done", extra={
        "batch_id": batch.pk, "kind": batch.kind, "events": len(entries), "alerts_fired": applied.fired,
        "absorbed": applied.absorbed, "resolved": applied.resolved})
    return BatchOutcome(batch_id=batch.pk, events=len(entries), stored=0, matched=0, alerts_fired=applied.fired)


def _record_failure(batch_id: int, exc: Exception) -> None:
    try:
        IngestBatch.objects.filter(pk=batch_id, status=BatchStatus.PENDING).update(
            attempts=F("attempts") + 1, error=f"{type(exc).__name__}: {exc}"[:2000])
        failed = IngestBatch.objects.filter(pk=batch_id, status=BatchStatus.PENDING,
                                            attempts__gte=MAX_ATTEMPTS).update(status=BatchStatus.FAILED)
    except Exception:  # the database itself may be what failed
        logger.warning("detect: could not record the failure", extra={"batch_id": batch_id}, exc_info=True)
        return
    logger.error("detect: batch failed", extra={"batch_id": batch_id, "error": str(exc)[:500],
                                                 "given_up": bool(failed)})


def pending_batches_due(*, limit: int = SWEEP_LIMIT) -> list[int]:
    """Ids of PENDING batches whose doorbell looks lost, marking them swept now.

    A batch is due when neither its arrival nor the last sweep is newer than
    INGEST_SWEEP_AFTER_SECONDS; the oldest go first, at most ``limit`` per call.
    """
    now = clock.now()
    cutoff = now - timedelta(seconds=settings.INGEST_SWEEP_AFTER_SECONDS)
    with transaction.atomic():
        ids = list(IngestBatch.objects.filter(status=BatchStatus.PENDING, received_at__lt=cutoff)
                   .filter(Q(swept_at__isnull=True) | Q(swept_at__lt=cutoff))
                   .order_by("received_at").values_list("id", flat=True)[:limit])
        if ids:
            IngestBatch.objects.filter(pk__in=ids).update(swept_at=now)
    return ids
