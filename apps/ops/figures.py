"""The figures behind /metrics and the self-monitoring checks, read from the database.

Contract: every function is read-only and returns plain numbers; counters are derived from rows
that are only ever added (attempts, timeline lines, alerts), through ``apps.ops.folds`` (the older
rows' counts kept in ``MetricRollup``, the newest few minutes counted at scrape time, so a scrape
costs the same however long the history), or, for ingest batches, from rows plus the
``MetricRollup`` totals that retention folds in when it deletes them, so they never go down.
Because the figures come from the database they are exact whatever the number of web, worker or
host processes. Failure policy: database errors propagate; the collector turns them into
``monitoring_metrics_collect_success 0``.

Ops sits on top of every app (DESIGN 8), so it imports their models directly. The two latency
histograms are the only figures with vendor-specific SQL: apps.ops.fastpath.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Max, Min, Q, Sum

from apps.core.models import MetricRollup, WorkerHeartbeat
from apps.core.vocabulary import NOTIFY_EVENTS
from apps.delivery import breaker
from apps.delivery.models import Delivery, DeliveryAttempt
from apps.ingest.models import IngestBatch
from apps.reports.models import ReportRun
from apps.tenants.models import Tenant

from . import folds
from .fastpath import Histogram

WINDOWS = {"15m": timedelta(minutes=15), "24h": timedelta(hours=24)}
MIXED_TENANT = "_mixed"  # a platform token's batch spanning several tenants
ALL_TENANTS = "_all"     # every tenant, when there are more than METRICS_TENANT_LABEL_LIMIT
ROLLUP_ACCEPTED = "ingest_events_accepted"
ROLLUP_REJECTED = "ingest_events_rejected"


def tenant_names() -> dict[int | None, str]:
    """tenant id -> label value; everything maps to "_all" above METRICS_TENANT_LABEL_LIMIT
    (bounded cardinality: the label set is the tenant table, never anything a client sends)."""
    limit = getattr(settings, "METRICS_TENANT_LABEL_LIMIT", 100)
    rows = list(Tenant.objects.values_list("id", "slug")[: limit + 1])
    if len(rows) > limit:
        return {}
    return {None: MIXED_TENANT, **dict(rows)}


def _label(names: dict[int | None, str], tenant_id: int | None) -> str:
    if not names:
        return ALL_TENANTS
    return names.get(tenant_id, f"id:{tenant_id}")


def ingest_event_totals(names: dict[int | None, str]) -> dict[str, dict[str, int]]:
    """{"accepted": {tenant: n}, "rejected": {tenant: n}} over batches still stored plus rollups.

    ``rejected`` counts events refused inside an accepted request (IngestBatch.rejected_count);
    requests refused as a whole (401/403/413/422/429, or no event valid) write no batch: they show
    in django-prometheus' per-view status counters, not here. No reason is stored per event.
    """
    out: dict[str, dict[str, int]] = {"accepted": {}, "rejected": {}}
    for (kind, labels), n in folds.totals("batches").items():  # every batch stored: folded + past the fold
        label = _label(names, folds.tenant_of_label(labels))
        out[kind][label] = out[kind].get(label, 0) + n
    # Batches purged before their fold (apps.ops.retention) left their counts here.
    kinds = {ROLLUP_ACCEPTED: "accepted", ROLLUP_REJECTED: "rejected"}
    for name, labels, value in MetricRollup.objects.filter(name__in=kinds).values_list("name", "labels", "value"):
        label = _label(names, folds.tenant_of_label(labels))
        out[kinds[name]][label] = out[kinds[name]].get(label, 0) + value
    return out


def attempts_by_channel() -> dict[str, dict[str, int]]:
    """All-time delivery attempts per channel kind (webhook, email, sms, slack, ...):
    {kind: {success, failure, retries}} (retries: attempts beyond the first of their delivery)."""
    out: dict[str, dict[str, int]] = {}
    for (figure, labels), n in folds.totals("attempts").items():
        fields = dict(part.split("=", 1) for part in labels.split(","))
        entry = out.setdefault(fields["channel"], {"success": 0, "failure": 0, "retries": 0})
        entry[fields["result"] if figure == "attempts" else "retries"] += n
    return out


def webhook_attempt_totals() -> dict[str, int]:
    """All-time webhook attempts: total, successful, retries (attempt number > 1)."""
    webhook = attempts_by_channel().get("webhook", {"success": 0, "failure": 0, "retries": 0})
    return {"total": webhook["success"] + webhook["failure"], "success": webhook["success"],
            "retries": webhook["retries"]}


def downgrade_total() -> int:
    """Webhook deliveries that went to fallback (``downgraded_at`` is set once and never cleared)."""
    return folds.totals("deliveries").get(("downgrades", ""), 0)


def timeline_totals() -> dict[str, int]:
    """Acknowledgements and escalations, counted from the append-only timeline: the alert's own
    ``acknowledged_at`` is cleared when it reopens, which would make a counter go down."""
    counts = folds.totals("timeline")
    return {kind: counts.get(("timeline", f"kind={kind}"), 0) for kind in ("acknowledged", "escalated")}


def alerts_by_severity() -> dict[str, int]:
    return {labels.split("=", 1)[1]: n for (figure, labels), n in folds.totals("alerts").items() if figure == "created"}


def success_rates(now: datetime) -> dict[tuple[str, str], tuple[float | None, int]]:
    """{(window, kind): (rate or None, sample size)} for webhook deliveries.

    kind "initial": share of first attempts started in the window that succeeded (the receiver
    took it at once); kind "cumulative": share of alert notifications (alert.triggered /
    alert.escalated webhook deliveries) created in the window that are delivered by now, retries
    included (the dashboard's definition in apps.delivery.selectors).
    """
    out = {}
    for window, span in WINDOWS.items():
        since = now - span
        first = DeliveryAttempt.objects.filter(channel="webhook", number=1, started_at__gte=since).aggregate(
            n=Count("id"), ok=Count("id", filter=Q(success=True)))
        notes = Delivery.objects.filter(channel="webhook", event_type__in=NOTIFY_EVENTS,
                                        created_at__gte=since).aggregate(
            n=Count("id"), ok=Count("id", filter=Q(state="DELIVERED")))
        for kind, agg in (("initial", first), ("cumulative", notes)):
            out[(window, kind)] = (agg["ok"] / agg["n"] if agg["n"] else None, agg["n"])
    return out


@dataclass(frozen=True)
class Backlog:
    batches_pending: int
    oldest_batch_age: float
    deliveries_pending: dict[str, int]  # by tenant label
    deliveries_parked: dict[str, int]  # by tenant label: of the pending, those behind a breaker
    due_overdue: int  # due and not attempted
    oldest_due_overdue_age: float
    parked_expired: int  # parked behind a breaker past their expiry
    oldest_parked_expired_age: float  # since its expiry
    heartbeat_age: float | None  # None: no worker ever beat

    @property
    def deliveries_overdue(self) -> int:
        """Both kinds of late delivery: what /metrics exposes as overdue."""
        return self.due_overdue + self.parked_expired

    @property
    def oldest_overdue_age(self) -> float:
        return max(self.oldest_due_overdue_age, self.oldest_parked_expired_age)


def backlog(now: datetime, names: dict[int | None, str], *, per_tenant: bool = True) -> Backlog:
    """What the watchdog looks at: work waiting, and how long the newest worker has been silent.

    ``deliveries_overdue``: due (PENDING/DOWNGRADED with next_attempt_at in the past) for more than
    WATCHDOG_DELIVERY_OVERDUE_SECONDS, i.e. no worker picked them up (``due_overdue``), and parked
    behind a breaker for that long past their ``expires_at``, i.e. the sweeper's upkeep neither
    failed nor released them (``parked_expired``); each kind has its own oldest age. ``per_tenant``
    False leaves ``deliveries_pending`` and ``deliveries_parked`` empty: the count of every
    unfinished delivery (a dead endpoint's backlog among them) is the scrape's figure, not the
    watchdog's.

    ``deliveries_parked``: the pending rows parked behind a downgraded endpoint's circuit breaker
    (``apps.delivery.breaker``: no attempt scheduled, they wait for a probe to get through; also
    those behind an endpoint restored, disabled or deleted, until ``drain`` has made them due, a
    CHUNK per endpoint and sweep), 0 for every tenant with pending rows and none parked. A dead
    receiver's backlog is the tenant's, not a sign that the pipeline is behind: an alert on the
    pending gauge can leave them out.
    """
    b = IngestBatch.objects.filter(status="PENDING").aggregate(n=Count("id"), oldest=Min("received_at"))
    pending: dict[str, int] = {}
    parked: dict[str, int] = {}
    # Two queries, each matching one partial index (delivery_due, delivery_sending) exactly, so the
    # count reads the unfinished rows only, not the whole history; delivery_due holds next_attempt_at,
    # which tells the parked ones.
    rows = [*(Delivery.objects.filter(state__in=("PENDING", "DOWNGRADED")).values("tenant_id")
              .annotate(n=Count("id"), parked=Count("id", filter=breaker.parked_q())).order_by()),
            *(Delivery.objects.filter(state="SENDING").values("tenant_id").annotate(n=Count("id")).order_by())
            ] if per_tenant else []
    for row in rows:
        label = _label(names, row["tenant_id"])
        pending[label] = pending.get(label, 0) + row["n"]
        # Every tenant with a pending series gets a parked one, 0 or not: PromQL's
        # ``pending - parked`` only answers where both series exist.
        parked[label] = parked.get(label, 0) + row.get("parked", 0)
    overdue_before = now - timedelta(seconds=settings.WATCHDOG_DELIVERY_OVERDUE_SECONDS)
    d = Delivery.objects.filter(state__in=("PENDING", "DOWNGRADED"), next_attempt_at__lt=overdue_before).aggregate(
        n=Count("id"), oldest=Min("next_attempt_at"))
    # A parked row is failed by the breaker's upkeep at its expiry (``hold``), or made due once its
    # endpoint is restored, disabled or deleted (``drain``). One still parked past its expiry means
    # that upkeep keeps failing (it logs at every sweep) or is far behind: nothing else would tell.
    # delivery_parked_expiry holds the parked rows only, by expiry: the late ones are a range of it.
    late = Delivery.objects.filter(breaker.parked_q(), expires_at__lt=overdue_before).aggregate(
        n=Count("id"), oldest=Min("expires_at"))
    return Backlog(
        batches_pending=b["n"], oldest_batch_age=_age(now, b["oldest"]),
        deliveries_pending=pending, deliveries_parked=parked,
        due_overdue=d["n"], oldest_due_overdue_age=_age(now, d["oldest"]),
        parked_expired=late["n"], oldest_parked_expired_age=_age(now, late["oldest"]),
        heartbeat_age=heartbeat_age(now),
    )


def _age(now: datetime, since: datetime | None) -> float:
    return (now - since).total_seconds() if since else 0.0


def heartbeat_age(now: datetime) -> float | None:
    """Seconds since the newest worker heartbeat; None when no worker ever beat."""
    newest = WorkerHeartbeat.objects.aggregate(at=Max("last_seen"))["at"]
    return (now - newest).total_seconds() if newest else None


def log_to_alert_latency() -> Histogram:
    """Alert creation minus the arrival of the log line that made it fire (alerts from logs only;
    self-monitoring alerts have no source line)."""
    return folds.histogram(folds.totals("alerts"), "log_to_alert")


def alert_to_delivery_latency() -> Histogram:
    """First successful notification of an alert (any channel: webhook, or fallback email/SMS)
    minus the alert's creation; alerts never delivered are not observed."""
    return folds.histogram(folds.totals("first_delivery"), "alert_to_delivery")


# Diagnostic reports gather up to DIAGNOSTIC_MAX_LINES lines: most take well under a second.
REPORT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def diagnostic_report_seconds() -> Histogram:
    """Generation time of every diagnostic report (page, NDJSON, zip) from its ``ReportRun`` row;
    one aggregate query, buckets upper-inclusive as Prometheus' ``le``."""
    row = ReportRun.objects.aggregate(
        count=Count("id"), total=Sum("seconds"),
        **{f"le_{i}": Count("id", filter=Q(seconds__lte=bound)) for i, bound in enumerate(REPORT_BUCKETS)})
    return Histogram(buckets=[(bound, row[f"le_{i}"]) for i, bound in enumerate(REPORT_BUCKETS)],
                     count=row["count"], total=row["total"] or 0.0)


def masking_violation_total() -> int:
    """Secrets the diagnostic export check found (and masked) that intake masking had let through."""
    return ReportRun.objects.aggregate(n=Sum("violations"))["n"] or 0
