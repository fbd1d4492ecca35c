"""``manage.py purge_expired [--dry-run] [--chunk-size N]``: apply the retention policy.

Prints one line per table with what it removed (or would remove); idempotent; exit code 1 on any
error (chunks committed before the error stay deleted, as a rerun would do). Policy and settings:
apps.ops.retention.
"""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from apps.ops.retention import purge_expired


class Command(BaseCommand):
    help = ("Delete rows past retention: events (EVENT_RETENTION_DAYS, 90), delivery attempts "
            "(DELIVERY_ATTEMPT_RETENTION_DAYS, 90), processed ingest batches "
            "(INGEST_BATCH_RETENTION_DAYS, 7), audit events (AUDIT_RETENTION_DAYS, 180, itself audited), "
            "stale worker heartbeats, live stream events (STREAM_RETENTION_DAYS, 7), idle rule windows, "
            "metric rollups (METRICS_RETENTION_DAYS, 9) and the series left without any. "
            "Chunked, idempotent; run daily.")

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="count what would be deleted, delete nothing")
        parser.add_argument("--chunk-size", type=int, default=5000,
                            help="rows per delete transaction (default 5000); smaller means shorter locks")

    def handle(self, *args, dry_run: bool = False, chunk_size: int = 5000, **options):
        if chunk_size <= 0:
            raise CommandError("--chunk-size must be a positive integer")
        try:
            report = purge_expired(dry_run=dry_run, chunk_size=chunk_size)
        except Exception as exc:
            raise CommandError(f"purge_expired failed: {type(exc).__name__}: {exc}") from exc
        verb = "would delete" if dry_run else "deleted"
        for table, n in report.removed.items():
            self.stdout.write(f"{table}: {verb} {n} (older than {report.cutoffs[table]:%Y-%m-%dT%H:%M:%SZ})")
        total = sum(report.removed.values())
        self.stdout.write(f"purge_expired: {verb} {total} rows{' (dry run)' if dry_run else ''}")
