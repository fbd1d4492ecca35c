"""Real processes for integration tests: a Celery worker, the embedded stack, free ports."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from django.conf import settings
from django.db import connection

BASE_DIR = Path(settings.BASE_DIR)
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], object], *, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail the test naming ``what``."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the peer may not be up yet
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else ""))


def live_database_url() -> str:
    """The URL of the database the tests run on (pytest-django's test_… database)."""
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def child_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = live_database_url()
    env.setdefault("SECRET_KEY", "test-only-secret-key")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


@contextmanager
def celery_worker(*, queues: str = "detect,deliver,default", concurrency: int = 1, name: str = "test",
                  env: dict[str, str] | None = None, log_path: Path | None = None) -> Iterator[subprocess.Popen]:
    """A real ``celery worker`` process on the test database and the test Redis broker."""
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(
        [str(BIN / "celery"), "-A", "alertcenter", "worker", "-Q", queues, "--concurrency", str(concurrency),
         "--pool", "prefork", "--loglevel", "INFO", "--without-gossip", "--without-mingle",
         "--hostname", f"{name}-{os.getpid()}@%h"],
        cwd=BASE_DIR, env=child_env(**(env or {})), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        stop_process(proc)
        if log_path:
            log.close()


def stop_process(proc: subprocess.Popen, *, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@contextmanager
def gunicorn_web(log_dir: Path, *, workers: int = 2, env: dict[str, str] | None = None,
                 log_format: str = "text", timeout: float = 40) -> Iterator[str]:
    """A real ``gunicorn -c alertcenter/gunicorn.conf.py`` on the test database; yields its base URL.

    Its own log file and multiprocess-metrics directory under ``log_dir``, keyed by port, so
    several web processes (and parallel runs) never share them.
    """
    import requests

    port = free_port()
    log = open(log_dir / f"gunicorn-{port}.log", "wb")
    overrides = {"WEB_BIND": f"127.0.0.1:{port}", "WEB_WORKERS": str(workers),
                 "PROMETHEUS_MULTIPROC_DIR": str(log_dir / f"prom-{port}"), "ALLOWED_HOSTS": "127.0.0.1,localhost",
                 "LOG_FORMAT": log_format, **(env or {})}
    proc = subprocess.Popen([str(BIN / "gunicorn"), "-c", "alertcenter/gunicorn.conf.py", "alertcenter.wsgi"],
                            cwd=BASE_DIR, env=child_env(**overrides), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(f"{base}/-/live", timeout=2).status_code == 200, timeout=timeout,
                 what=f"gunicorn up (see {log.name})")
        yield base
    finally:
        stop_process(proc)
        log.close()
