"""Retention: delete what is past its keep-time, in small chunks, exactly once (``purge_expired``).

Policy (settings, all in days):
  EventRecord                 received more than EVENT_RETENTION_DAYS (90) ago: the evidence lines. On
                              PostgreSQL whole day partitions are dropped (apps.core.partitions), the
                              rest (the cutoff's own day, the DEFAULT partition) deleted in chunks
  DeliveryAttempt             started more than DELIVERY_ATTEMPT_RETENTION_DAYS (90) ago: the attempt log
                              (each try's status, error, response excerpt). On PostgreSQL whole day
                              partitions are dropped (apps.core.partitions), the rest deleted in
                              chunks; only attempts the metrics' fold has counted (below)
  IngestBatch DONE            received_at older than INGEST_BATCH_RETENTION_DAYS (7): the payload is big
  IngestBatch FAILED          received_at older than EVENT_RETENTION_DAYS (kept longer for replay)
  AuditEvent                  at older than AUDIT_RETENTION_DAYS (180), via apps.audit.retention.purge_before
                              (the only delete audit allows; it audits itself)
  WorkerHeartbeat             last_seen older than 7 days (hosts that are gone)
  StreamEvent                 created_at older than STREAM_RETENTION_DAYS (7), via apps.stream.retention
  WindowState                 idle: its counts out of every window, no active alert, its cooldown over
                              (apps.rules.retention)
  MetricRollup                minute older than METRICS_RETENTION_DAYS (9; never less than the rules'
                              8 days of reach), and then MetricSeries with no rollup left
PENDING batches are never purged. Alerts, timelines and deliveries are not purged here (they are
the product's history and the metrics' counters); a delivery keeps its outcome (state, attempts,
last error and status) when its attempt rows go.

Contract: each chunk is one short transaction deleting at most ``chunk_size`` rows by primary key
(keyset over the ids, ``id > last``), so no lock is held for long and a crash loses at most one
uncommitted chunk; running again finishes the job (idempotent). Deleted ingest batches fold their
event counts into ``core.MetricRollup`` in the same transaction, so the ingest counters on /metrics
never go down; attempts are deleted only once the attempts fold (``apps.ops.folds``) has counted
them, for the same reason (a day holding an attempt past the fold waits for the next run).
``dry_run`` counts instead of deleting. Failure policy: errors propagate (the command exits
non-zero); chunks already committed stay deleted, which is what a rerun would do.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import F, Min, Q

from apps.audit.models import AuditEvent
from apps.audit.retention import purge_before
from apps.core import clock
from apps.core.models import MetricRollup, WorkerHeartbeat
from apps.delivery.fastpath import ATTEMPT_PARTITIONS
from apps.delivery.models import DeliveryAttempt
from apps.ingest.fastpath import EVENT_PARTITIONS
from apps.ingest.models import BatchStatus, EventRecord, IngestBatch
from apps.rules import retention as rules_retention
from apps.stream import retention as stream_retention

from . import folds
from .figures import ROLLUP_ACCEPTED, ROLLUP_REJECTED
from .folds import rollup_label

logger = logging.getLogger(__name__)

HEARTBEAT_RETENTION = timedelta(days=7)


@dataclass
class PurgeReport:
    dry_run: bool
    removed: dict[str, int] = field(default_factory=dict)  # table -> rows (to delete, when dry_run)
    cutoffs: dict[str, datetime] = field(default_factory=dict)


def _chunks(qs: models.QuerySet, chunk_size: int, delete: Callable[[list[int]], int]) -> int:
    """Delete ``qs`` rows ``chunk_size`` ids at a time, each chunk in its own transaction.

    ``delete(ids)`` runs inside the chunk's transaction and returns how many rows it removed; it
    must re-apply the retention condition (``qs`` is re-evaluated per chunk, so a row that changed
    since is never deleted by a stale id list).
    """
    total, last = 0, 0
    while True:
        with transaction.atomic():
            ids = list(qs.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:chunk_size])
            if not ids:
                return total
            total += delete(ids)
        last = ids[-1]


def _delete_events(cutoff: datetime) -> Callable[[list[int]], int]:
    def delete(ids: list[int]) -> int:
        return EventRecord.objects.filter(pk__in=ids, received_at__lt=cutoff).delete()[0]
    return delete


def ensure_partitions(today: date) -> list[str]:
    """The day partitions from ``today`` to a week ahead of every day-partitioned table; the names
    created (beat, hourly, and every purge)."""
    return EVENT_PARTITIONS.ensure(today) + ATTEMPT_PARTITIONS.ensure(today)


def _catch_up_folds() -> None:
    """Fold the counters as far as they may go. Each ``folds.advance`` goes at most FOLD_CHUNK ids per
    fold; where nothing scrapes /metrics this daily call is the only one, and a day's traffic can be
    more than that (the attempts it may delete are only those folded). Ends when no fold moves."""
    previous: dict[str, int] | None = None
    while (current := folds.advance(chunk=folds.FOLD_CHUNK)) != previous:
        previous = current


def _purge_events(cutoff: datetime, chunk_size: int) -> int:
    """Drop the day partitions past the cutoff (PostgreSQL), then delete what is left past it by row."""
    dropped = EVENT_PARTITIONS.drop_before(cutoff)
    rest = EventRecord.objects.filter(EVENT_PARTITIONS.outside_days_before(cutoff), received_at__lt=cutoff)
    return dropped + _chunks(rest, chunk_size, _delete_events(cutoff))


def _expired_attempts(cutoff: datetime, folded: int) -> models.QuerySet:
    """Attempts past the cutoff that the attempts fold has counted (ids up to ``folded``): /metrics'
    attempt counters are the fold's rollups plus the rows past it, so a row deleted before its fold
    would leave them. The fold never goes back, so a row under it stays counted."""
    return DeliveryAttempt.objects.filter(started_at__lt=cutoff, id__lte=folded)


def _purge_attempts(cutoff: datetime, chunk_size: int) -> int:
    """``_purge_events`` for the attempt log, whose days are dropped only once folded whole."""
    folded = folds.folded_to("attempts")

    def folded_whole(partition: str) -> bool:
        with connection.cursor() as cursor:  # under the table lock: a probe of the primary key, no count
            cursor.execute(f'SELECT max(id) FROM "{partition}"')
            newest = cursor.fetchone()[0]
        if newest is None or newest <= folded:
            return True
        logger.warning("retention: attempt day kept: the metrics' fold has not counted all of it yet",
                       extra={"partition": partition, "newest_id": newest, "folded_to": folded})
        return False

    dropped = ATTEMPT_PARTITIONS.drop_before(cutoff, droppable=folded_whole)

    def delete(ids: list[int]) -> int:
        return DeliveryAttempt.objects.filter(pk__in=ids, started_at__lt=cutoff).delete()[0]
    rest = _expired_attempts(cutoff, folded).filter(ATTEMPT_PARTITIONS.outside_days_before(cutoff))
    return dropped + _chunks(rest, chunk_size, delete)


def _attempts_to_purge(cutoff: datetime) -> int:
    """What ``_purge_attempts`` would remove with the fold where it stands (the dry run): the past
    days folded whole, and the folded rows outside past days. A real run first brings the folds up
    to date, so it may remove more; a day whose lock does not come, it removes later."""
    folded = folds.folded_to("attempts")
    whole = 0
    for day in ATTEMPT_PARTITIONS.days_before(cutoff):
        with connection.cursor() as cursor:
            cursor.execute(f'SELECT max(id), count(*) FROM "{day.name}"')
            newest, rows = cursor.fetchone()
        if newest is None or newest <= folded:
            whole += rows
    return whole + _expired_attempts(cutoff, folded).filter(ATTEMPT_PARTITIONS.outside_days_before(cutoff)).count()


def _batch_q(now: datetime) -> Q:
    done_cutoff = now - timedelta(days=settings.INGEST_BATCH_RETENTION_DAYS)
    failed_cutoff = now - timedelta(days=settings.EVENT_RETENTION_DAYS)
    return (Q(status=BatchStatus.DONE, received_at__lt=done_cutoff)
            | Q(status=BatchStatus.FAILED, received_at__lt=failed_cutoff))


def _delete_batches(now: datetime) -> Callable[[list[int]], int]:
    def delete(ids: list[int]) -> int:
        # Lock the rows, fold their counts into the rollups, then delete them: one transaction,
        # so a scrape sees either the rows or the rollup, never both or neither.
        # Rows the counters' fold already counted are only deleted; the others (purged before their
        # fold: a purge right after a long pause) are added to the rollups. The fold's row stays
        # locked until commit, so no fold runs in between.
        folded = folds.folded_to("batches", lock=True)
        rows = list(IngestBatch.objects.select_for_update().filter(_batch_q(now), pk__in=ids)
                    .values_list("pk", "tenant_id", "event_count", "rejected_count"))
        sums: dict[tuple[str, str], int] = defaultdict(int)
        for pk, tenant_id, accepted, rejected in rows:
            if pk <= folded:
                continue
            sums[(ROLLUP_ACCEPTED, rollup_label(tenant_id))] += accepted
            sums[(ROLLUP_REJECTED, rollup_label(tenant_id))] += rejected
        for (name, labels), value in sorted(sums.items()):
            if value:
                _add_rollup(name, labels, value)
        return IngestBatch.objects.filter(pk__in=[r[0] for r in rows]).delete()[0]
    return delete


def _add_rollup(name: str, labels: str, value: int) -> None:
    row, created = MetricRollup.objects.get_or_create(name=name, labels=labels, defaults={"value": value})
    if not created:
        MetricRollup.objects.filter(pk=row.pk).update(value=F("value") + value)


def _detection_time(now: datetime) -> datetime:
    """The time the detect engine judges windows at: ``now``, or the arrival of the oldest batch still
    waiting for detection (a backlog is counted at its arrival, in windows a purge must not take)."""
    oldest = IngestBatch.objects.filter(status=BatchStatus.PENDING).aggregate(at=Min("received_at"))["at"]
    return min(now, oldest) if oldest else now


def purge_expired(*, dry_run: bool = False, chunk_size: int = 5000, now: datetime | None = None) -> PurgeReport:
    """Apply the retention policy (module docstring); returns what was (or would be) removed per table."""
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    now = now or clock.now()
    report = PurgeReport(dry_run=dry_run)
    event_cutoff = now - timedelta(days=settings.EVENT_RETENTION_DAYS)
    attempt_cutoff = now - timedelta(days=settings.DELIVERY_ATTEMPT_RETENTION_DAYS)
    audit_cutoff = now - timedelta(days=settings.AUDIT_RETENTION_DAYS)
    heartbeat_cutoff = now - HEARTBEAT_RETENTION
    plan: list[tuple[str, datetime, models.QuerySet | None, Callable[[list[int]], int] | None]] = [
        ("ingest_eventrecord", event_cutoff, EventRecord.objects.filter(received_at__lt=event_cutoff), None),
        ("delivery_deliveryattempt", attempt_cutoff, None, None),  # _purge_attempts; its dry run, _attempts_to_purge
        ("ingest_ingestbatch", now - timedelta(days=settings.INGEST_BATCH_RETENTION_DAYS),
         IngestBatch.objects.filter(_batch_q(now)), _delete_batches(now)),
        ("audit_auditevent", audit_cutoff, AuditEvent.objects.filter(at__lt=audit_cutoff), None),
        ("stream_streamevent", *stream_retention.expired(now)),
        ("rules_windowstate", *rules_retention.idle(_detection_time(now))),
        ("rules_metricrollup", *rules_retention.old_rollups(now)),
        ("rules_metricseries", *rules_retention.stale_series(now)),  # after the rollups
        ("core_workerheartbeat", heartbeat_cutoff, WorkerHeartbeat.objects.filter(last_seen__lt=heartbeat_cutoff),
         lambda ids: WorkerHeartbeat.objects.filter(pk__in=ids, last_seen__lt=heartbeat_cutoff).delete()[0]),
    ]
    if not dry_run:
        _catch_up_folds()
        ensure_partitions(clock.now().date())  # beat does it hourly too
    for table, cutoff, qs, delete in plan:
        report.cutoffs[table] = cutoff
        if dry_run:
            report.removed[table] = qs.count() if qs is not None else _attempts_to_purge(cutoff)
        elif table == "ingest_eventrecord":
            report.removed[table] = _purge_events(event_cutoff, chunk_size)
        elif table == "delivery_deliveryattempt":
            report.removed[table] = _purge_attempts(attempt_cutoff, chunk_size)
        elif delete is None:  # audit: its own privileged, self-audited path
            report.removed[table] = purge_before(audit_cutoff, chunk_size=chunk_size)
        else:
            report.removed[table] = _chunks(qs, chunk_size, delete)
    if not dry_run:
        logger.info("retention: purge done", extra={"removed": report.removed})
    return report

