"""gunicorn settings for the web process; override with GUNICORN_* style env vars below."""
import multiprocessing
import os

bind = os.environ.get("WEB_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_WORKERS", multiprocessing.cpu_count() * 2 + 1))
timeout = int(os.environ.get("WEB_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
accesslog = "-"
# Recycle workers now and then so a slow leak never takes a node down.
max_requests = 10_000
max_requests_jitter = 1_000
