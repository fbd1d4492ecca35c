"""``manage.py replay_logs FILE``: feed an NDJSON file through the intake path, offline."""
from __future__ import annotations

import sys
import time
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from apps.core import clock
from apps.core.errors import ApplicationError
from apps.ingest.normalize import BodyError, EventError, normalize_event, parse_body
from apps.ingest.services import QuotaExceeded, Writer, accept_events
from apps.tenants.models import Tenant

MAX_QUOTA_WAITS = 60


class Command(BaseCommand):
    help = ("Replay an NDJSON log file through the same validation, masking and batch path as "
            "POST /api/v1/logs; prints accepted/rejected/batches.")

    def add_arguments(self, parser):
        parser.add_argument("file", help="NDJSON file, one event per line ('-' for stdin)")
        parser.add_argument("--tenant", help="tenant slug for events without tenant_id (others are rejected)")
        parser.add_argument("--speed", type=float, default=0.0,
                            help="replay at this multiple of the original pace (by event ts); 0 = as fast as possible")
        parser.add_argument("--batch-size", type=int, default=1000, help="events per batch (default 1000)")

    def handle(self, *args, **opts):
        if opts["batch_size"] <= 0:
            raise CommandError("--batch-size must be positive")
        if opts["speed"] < 0:
            raise CommandError("--speed must be >= 0")
        if opts["tenant"] and not Tenant.objects.filter(slug=opts["tenant"]).exists():
            # Fail the run (exit 1), not every line one by one with exit 0: a typo in a cron line shows.
            raise CommandError(f"no tenant {opts['tenant']!r}")
        lines = self._read(opts["file"])
        writer = Writer(token_id=None, tenant_slug=opts["tenant"])
        accepted = rejected = batches = 0
        pace = _Pacer(opts["speed"])
        size = opts["batch_size"]
        for start in range(0, len(lines), size):
            chunk = lines[start:start + size]
            try:
                items = parse_body(b"\n".join(raw for _, raw in chunk), "application/x-ndjson")
            except BodyError as exc:
                rejected += len(chunk)
                self.stderr.write(f"lines {chunk[0][0]}-{chunk[-1][0]}: {exc}")
                continue
            pace.wait_for(items)
            result = self._accept(items, writer)
            accepted += result.accepted
            rejected += len(result.rejected)
            batches += result.batch_id is not None
            for r in result.rejected[:20]:
                self.stderr.write(f"line {chunk[r['index']][0]}: {r['error']}")
        self.stdout.write(f"replayed {opts['file']}: accepted {accepted}, rejected {rejected}, batches {batches}")

    def _read(self, path: str) -> list[tuple[int, bytes]]:
        try:
            if path == "-":
                data = sys.stdin.buffer.read()
            else:
                with open(path, "rb") as fh:
                    data = fh.read()
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from None
        return [(n, line) for n, line in enumerate(data.split(b"\n"), start=1) if line.strip()]

    def _accept(self, items: list[object], writer: Writer):
        for _ in range(MAX_QUOTA_WAITS):
            try:
                return accept_events(items=items, writer=writer)
            except QuotaExceeded as exc:
                time.sleep(int(exc.headers.get("Retry-After", "1")))
            except ApplicationError as exc:
                raise CommandError(f"replay stopped: {exc.message}") from None
        raise CommandError("replay stopped: tenant quota still exhausted")


class _Pacer:
    """Sleeps so that batches go out at ``speed`` times the pace of their events' timestamps."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self.first_ts = None
        self.started = 0.0

    def wait_for(self, items: list[object]) -> None:
        if not self.speed:
            return
        ts = _first_ts(items)
        if ts is None:
            return
        if self.first_ts is None:
            self.first_ts, self.started = ts, time.monotonic()
            return
        due = self.started + (ts - self.first_ts).total_seconds() / self.speed
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def _first_ts(items: list[object]):
    wide = timedelta(days=365 * 100)
    for item in items:
        if not isinstance(item, dict):
            continue
        try:
            # Only the timestamp matters here; the tenant is checked for real by accept_events.
            return normalize_event({**item, "tenant_id": "x"}, now=clock.now(), max_past=wide,
                                   max_future=wide).ts
        except EventError:
            continue
    return None
