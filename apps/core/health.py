"""Readiness checks shared by the health endpoint and the watchdog."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import connection

from . import clock


def check_database() -> tuple[bool, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        # display_name ("PostgreSQL", "SQLite") lowered is what this detail has always said.
        return True, connection.display_name.lower()
    except Exception as exc:  # any driver error means "down"
        return False, f"{type(exc).__name__}: {exc}".strip()[:300]


def check_broker() -> tuple[bool, str]:
    url = settings.CELERY_BROKER_URL
    if url.startswith("filesystem://"):
        folder = Path(settings.BROKER_DIR)
        ok = folder.is_dir() and _writable(folder)
        return ok, "filesystem" if ok else f"broker folder {folder} missing or not writable"
    from alertcenter.celery import app

    try:
        with app.connection_for_write(url) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return True, url.split("://", 1)[0]
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}".strip()[:300]


def check_worker() -> tuple[bool, str]:
    from .models import WorkerHeartbeat

    try:
        newest = WorkerHeartbeat.objects.order_by("-last_seen").first()
    except Exception as exc:
        return False, f"{type(exc).__name__}"
    if newest is None:
        return False, "no worker heartbeat yet"
    age = clock.now() - newest.last_seen
    ok = age <= timedelta(seconds=settings.WORKER_HEARTBEAT_MAX_AGE)
    return ok, f"{newest.hostname} seen {age.total_seconds():.0f}s ago"


def _writable(folder: Path) -> bool:
    import os

    return os.access(folder, os.W_OK)


def run_checks() -> dict[str, dict]:
    results = {}
    for name, check in (("database", check_database), ("broker", check_broker), ("worker", check_worker)):
        ok, detail = check()
        results[name] = {"ok": ok, "detail": detail}
    return results
