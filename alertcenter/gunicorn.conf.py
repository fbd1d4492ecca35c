"""gunicorn settings for the web process (``gunicorn -c alertcenter/gunicorn.conf.py alertcenter.wsgi``).

Environment: WEB_BIND (0.0.0.0:8000), WEB_WORKERS (2 x CPUs + 1, at most 9: each worker holds its
own database connection), WEB_TIMEOUT (30 s), PROMETHEUS_MULTIPROC_DIR (see below).

Process layout (README "Operations"): one image, three process types:
  web:    gunicorn -c alertcenter/gunicorn.conf.py alertcenter.wsgi
  worker: celery -A alertcenter worker -Q detect   (and -Q deliver, -Q default: one per queue)
  beat:   celery -A alertcenter beat               (exactly one in the whole deployment)
"""
from __future__ import annotations

import multiprocessing
import os
import shutil
from pathlib import Path

bind = os.environ.get("WEB_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_WORKERS", min(multiprocessing.cpu_count() * 2 + 1, 9)))
timeout = int(os.environ.get("WEB_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
# Recycle workers now and then so a slow leak never takes a node down. Safe for metrics: a
# recycled worker's counters stay in its multiprocess files and keep being summed.
max_requests = 10_000
max_requests_jitter = 1_000
# Heartbeat files on tmpfs where there is one: a slow overlay disk in a container can make
# gunicorn think workers hung.
if Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK):
    worker_tmp_dir = "/dev/shm"

# Access log as one JSON object per line, like every other log line (apps.core.logging).
accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "apps.core.logging.JsonFormatter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"},
        "error_console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
    },
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
    },
}

# prometheus_client multiprocess mode (its documented gunicorn setup): the directory must be in the
# environment before any worker imports prometheus_client, must start empty (stale files from a
# previous run would be summed in), and each dead worker is marked so its live gauges drop out.
# This file is read by the master before the application is imported, so setting it here is early
# enough. Only the web process uses it: Celery processes keep no metrics of their own (the product
# metrics are derived from the database at scrape time, see apps.ops.metrics).
_multiproc_dir = Path(os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR",
    str(Path(os.environ.get("ALERTCENTER_VAR_DIR", Path(__file__).resolve().parent.parent / "var"))
        / "prometheus-web")))


def on_starting(server) -> None:
    shutil.rmtree(_multiproc_dir, ignore_errors=True)
    _multiproc_dir.mkdir(parents=True, exist_ok=True)


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
