"""Helpers for the operations tests: a real gunicorn web process and a /metrics parser."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import gunicorn_web

# Samples that depend on the moment of the scrape, not on the data.
TIME_DEPENDENT = ("monitoring_metrics_collect_duration_seconds", "monitoring_worker_heartbeat_age_seconds",
                  "monitoring_ingest_oldest_pending_batch_age_seconds", "monitoring_deliveries_oldest_overdue_seconds")


@contextmanager
def gunicorn(tmp_path: Path, *, workers: int = 2, env: dict[str, str] | None = None) -> Iterator[str]:
    """``gunicorn -c alertcenter/gunicorn.conf.py`` on the test database; yields its base URL.

    Its own multiprocess directory under tmp_path, so parallel runs never share metric files.
    """
    with gunicorn_web(tmp_path, workers=workers, env=env, log_format="json", timeout=30) as base:
        yield base


def parse(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of one exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def product(samples: dict[tuple[str, tuple], float]) -> dict[tuple[str, tuple], float]:
    """The database-derived samples whose value depends only on the data."""
    return {k: v for k, v in samples.items()
            if k[0].startswith("monitoring_") and not k[0].startswith(TIME_DEPENDENT)}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]
