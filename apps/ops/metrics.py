"""``/metrics``: django-prometheus' request/DB metrics plus the product metrics, exact across processes.

Two sources, one exposition:

* Product metrics (``monitoring_*``) come from ``DatabaseCollector``, which derives them from
  the database at scrape time (apps.ops.figures). Nothing is counted in process memory, so
  any number of gunicorn workers, Celery processes or hosts report the same exact values, and a
  restarted process never looks like a counter reset. All queries of one scrape run in one
  REPEATABLE READ read-only transaction (one snapshot: a purge committing mid-scrape cannot count
  a batch twice or not at all), under ``METRICS_STATEMENT_TIMEOUT_MS`` so a slow database makes
  the scrape fail fast instead of piling up.
* Per-process metrics (django-prometheus request latency/status and DB query counters of the web
  process) use prometheus_client's multiprocess mode when ``PROMETHEUS_MULTIPROC_DIR`` is set
  (alertcenter/gunicorn.conf.py sets it before anything imports prometheus_client, wipes it at
  start and marks dead workers): each gunicorn worker writes its own mmap files and the scrape
  sums them, whichever worker answers. Without the variable (runserver, tests) the process's own
  registry is served (apps.core.metrics.process_metrics_source).

Failure policy: a database error during collection yields ``monitoring_metrics_collect_success 0``
and none of the database-derived series (absent, not wrong); the per-process metrics still answer.
"""
from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Iterable, Iterator

from django.conf import settings
from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from apps.core import clock
from apps.core.metrics import process_metrics_source
from apps.core.vocabulary import SEVERITIES

from . import figures as q
from . import folds
from .fastpath import begin_scrape_snapshot

logger = logging.getLogger(__name__)


class DatabaseCollector:
    """A prometheus_client collector whose every sample is read from the database per scrape."""

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        try:
            families = list(self._collect_in_snapshot())
            ok = 1
        except Exception:
            logger.exception("metrics: collecting from the database failed")
            families, ok = [], 0
        yield from families
        yield GaugeMetricFamily("monitoring_metrics_collect_success",
                                "1 if the database-derived metrics of this scrape were collected", value=ok)
        yield GaugeMetricFamily("monitoring_metrics_collect_duration_seconds",
                                "Time spent reading the database-derived metrics",
                                value=round(time.perf_counter() - started, 6))

    def _collect_in_snapshot(self) -> Iterable[Metric]:
        outermost = not connection.in_atomic_block  # inside a caller's transaction (tests): its snapshot
        with transaction.atomic(), folds.counted_once():
            begin_scrape_snapshot(outermost=outermost, timeout_ms=settings.METRICS_STATEMENT_TIMEOUT_MS)
            return list(families(clock.now()))


def families(now) -> Iterator[Metric]:
    """Every database-derived metric family (the README's "Metrics" table lists them)."""
    names = q.tenant_names()

    ingest = q.ingest_event_totals(names)
    for kind, doc in (("accepted", "Log events accepted by the intake API"),
                      ("rejected", "Log events refused inside accepted requests (per-event validation)")):
        family = CounterMetricFamily(f"monitoring_ingest_events_{kind}", doc, labels=["tenant"])
        for tenant, value in sorted(ingest[kind].items()):
            family.add_metric([tenant], value)
        yield family

    attempts = q.webhook_attempt_totals()
    yield CounterMetricFamily("monitoring_webhook_retry", "Webhook attempts beyond the first of their delivery",
                              value=attempts["retries"])
    family = CounterMetricFamily("monitoring_webhook_attempts", "Webhook delivery attempts by result",
                                 labels=["result"])
    family.add_metric(["success"], attempts["success"])
    family.add_metric(["failure"], attempts["total"] - attempts["success"])
    yield family
    family = CounterMetricFamily("monitoring_notification_attempts", "Delivery attempts by channel kind and result",
                                 labels=["channel", "result"])
    for channel, results in sorted(q.attempts_by_channel().items()):
        for result in ("success", "failure"):
            family.add_metric([channel, result], results[result])
    yield family
    yield CounterMetricFamily("monitoring_alert_downgrade", "Webhook deliveries sent by fallback email/SMS instead",
                              value=q.downgrade_total())

    timeline = q.timeline_totals()
    yield CounterMetricFamily("monitoring_alert_confirmed", "Alert acknowledgements by operators or tokens",
                              value=timeline["acknowledged"])
    yield CounterMetricFamily("monitoring_alert_escalations", "Escalation steps taken on unacknowledged alerts",
                              value=timeline["escalated"])
    family = CounterMetricFamily("monitoring_alerts_created", "Alerts created", labels=["severity"])
    by_severity = q.alerts_by_severity()
    for severity in SEVERITIES:
        family.add_metric([severity], by_severity.get(severity, 0))
    yield family

    rate = GaugeMetricFamily("monitoring_webhook_delivery_success_rate",
                             "Webhook delivery success ratio (initial: first attempts; cumulative: notifications "
                             "delivered by now); absent when the window has no sample", labels=["window", "kind"])
    sample = GaugeMetricFamily("monitoring_webhook_delivery_sample_size",
                               "Denominator of monitoring_webhook_delivery_success_rate", labels=["window", "kind"])
    for (window, kind), (value, n) in sorted(q.success_rates(now).items()):
        if value is not None:
            rate.add_metric([window, kind], round(value, 6))
        sample.add_metric([window, kind], n)
    yield rate
    yield sample

    yield from _backlog_families(q.backlog(now, names))
    for name, doc, hist in (
        ("monitoring_log_to_alert_latency_seconds", "From a log line's arrival to the alert it fired",
         q.log_to_alert_latency()),
        ("monitoring_alert_to_delivery_latency_seconds", "From alert creation to its first successful notification",
         q.alert_to_delivery_latency()),
    ):
        buckets = [(repr(le), n) for le, n in hist.buckets] + [("+Inf", hist.count)]
        yield HistogramMetricFamily(name, doc, buckets=buckets, sum_value=round(hist.total, 6))
    yield from _report_families()


def _report_families() -> Iterator[Metric]:
    hist = q.diagnostic_report_seconds()
    buckets = [(repr(le), n) for le, n in hist.buckets] + [("+Inf", hist.count)]
    yield HistogramMetricFamily("monitoring_diagnostic_report_seconds",
                                "Time to gather, check and render a diagnostic report",
                                buckets=buckets, sum_value=round(hist.total, 6))
    yield CounterMetricFamily("monitoring_masking_violation",
                              "Secrets the diagnostic export check masked that intake masking had let through",
                              value=q.masking_violation_total())


def _backlog_families(b: q.Backlog) -> Iterator[Metric]:
    yield GaugeMetricFamily("monitoring_ingest_batches_pending", "Stored batches not yet detected",
                            value=b.batches_pending)
    yield GaugeMetricFamily("monitoring_ingest_oldest_pending_batch_age_seconds",
                            "Age of the oldest undetected batch (0 when none)", value=round(b.oldest_batch_age, 3))
    family = GaugeMetricFamily("monitoring_deliveries_pending", "Deliveries not finished (pending, sending, "
                               "downgraded and still retrying)", labels=["tenant"])
    for tenant, n in sorted(b.deliveries_pending.items()):
        family.add_metric([tenant], n)
    yield family
    family = GaugeMetricFamily("monitoring_deliveries_parked", "Of the deliveries not finished, those waiting "
                               "behind a downgraded webhook endpoint's circuit breaker for a probe to get through",
                               labels=["tenant"])
    for tenant, n in sorted(b.deliveries_parked.items()):
        family.add_metric([tenant], n)
    yield family
    yield GaugeMetricFamily("monitoring_deliveries_overdue",
                            "Deliveries due for longer than WATCHDOG_DELIVERY_OVERDUE_SECONDS without an attempt, "
                            "or parked behind a circuit breaker that long past their expiry",
                            value=b.deliveries_overdue)
    yield GaugeMetricFamily("monitoring_deliveries_oldest_overdue_seconds",
                            "How long the oldest overdue delivery has been due, or a parked one expired (0 when none)",
                            value=round(b.oldest_overdue_age, 3))
    if b.heartbeat_age is not None:
        yield GaugeMetricFamily("monitoring_worker_heartbeat_age_seconds",
                                "Seconds since the newest Celery worker heartbeat", value=round(b.heartbeat_age, 3))


class _Exposition:
    """Several collectors as one ``registry`` for generate_latest."""

    def __init__(self, *sources) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            yield from source.collect()


def metrics_view(request: HttpRequest) -> HttpResponse:
    """GET /metrics. With METRICS_BEARER_TOKEN set, requires ``Authorization: Bearer <it>``
    (tenant slugs are label values; Prometheus sends it with ``authorization`` in scrape_config)."""
    token = settings.METRICS_BEARER_TOKEN
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return HttpResponse("metrics: bearer token required\n", status=401, content_type="text/plain")
    folds.advance_if_due()  # its own short transaction, before the scrape's snapshot
    body = generate_latest(_Exposition(process_metrics_source(), DatabaseCollector()))
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
