"""Per-process request/DB metrics (django-prometheus) for /metrics: the plumbing that must sit
under every app. The product metrics and the view are in apps.ops.metrics.

prometheus_client's multiprocess mode is on when ``PROMETHEUS_MULTIPROC_DIR`` is set
(alertcenter/gunicorn.conf.py sets it before anything imports prometheus_client): each gunicorn
worker writes its own mmap files and the scrape sums them, whichever worker answers.
"""
from __future__ import annotations

import os

from prometheus_client import REGISTRY, CollectorRegistry


def process_metrics_source() -> CollectorRegistry:
    """The multiprocess aggregate when PROMETHEUS_MULTIPROC_DIR is set, else this process's registry."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY
