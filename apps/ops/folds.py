"""Counters that cost a scrape the same at ten million rows as at a thousand.

/metrics' all-time counters come from tables that only grow (delivery attempts, timeline lines,
alerts, deliveries: retention keeps them as history) or hold days of traffic (ingest batches). Counting them whole at every scrape grew
with history (0.3-0.5 s at 100k alerts). A *fold* counts a table's older rows once, keeps the
counts in ``MetricRollup`` rows named ``fold:<fold>:<figure>``, and remembers how far it went
(``MetricFold.folded_to``, an id); a scrape adds the rows past it (``id > folded_to``: the last few
minutes, a primary-key range) to the folded counts, in its one snapshot. On the attempt log,
partitioned by day, that range is also bounded by time (``recent``): the rows past the fold were
written after ``MetricFold.folded_at``, so the scrape plans the partitions of the days since then, not
the ~100 kept (planning over 99 day partitions took 1.3-1.7 ms a count). Within a scrape
(``counted_once``) each fold is counted once, though several families read some.

Exact, under two rules:
* ids are allocated in insert order but transactions commit in any order, so a fold never goes
  past an id that was already allocated ``METRICS_FOLD_DELAY_SECONDS`` (120) ago: a row below it
  whose transaction is still open could otherwise be skipped forever. Every transaction of the
  product is far shorter (milliseconds to seconds);
* a fold with a ``pin`` stops before the first row whose counts may still change: a delivery not
  finished yet (it can still be downgraded), an alert with a notification not finished yet (its
  first delivery may still come).

Who folds: the /metrics view before its snapshot (at most every ``METRICS_FOLD_EVERY_SECONDS`` per
process, at most ``FOLD_CHUNK`` ids per fold per run, so a first fold of a big table spreads over a
few scrapes; an error is logged and the scrape is served from the rows), and ``purge_expired``.
Processes folding at once take turns on the fold's row (FOR UPDATE).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timezone

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, Min, Model, Q, Sum

from apps.alerts.models import ACTIVE_STATES, Alert, TimelineEntry
from apps.core.models import MetricFold, MetricRollup
from apps.core.vocabulary import EVENT_TRIGGERED, DeliveryState
from apps.delivery.models import Delivery, DeliveryAttempt
from apps.delivery.selectors import ATTEMPT_CLOCK_MARGIN
from apps.ingest.models import IngestBatch

from . import fastpath
from .fastpath import LATENCY_BUCKETS, Histogram

logger = logging.getLogger(__name__)

Counts = dict[tuple[str, str], int]  # (figure, labels) -> value
FOLD_CHUNK = 500_000  # ids per fold per run
UNFINISHED = (DeliveryState.PENDING, DeliveryState.SENDING, DeliveryState.DOWNGRADED)


@dataclass(frozen=True)
class Fold:
    name: str
    model: type[Model]
    count: Callable[[int, int | None], Counts]  # counts of rows with lo < id <= hi (hi None: no bound)
    pin: Callable[[int, int], int | None] | None = None  # smallest id in (lo, hi] not to fold yet
    # For a table partitioned by a time column (the attempt log): that column, and the counts of
    # the rows with id > lo whose time is at or after a bound, so a scrape reads only their days.
    time_field: str | None = None
    recent: Callable[[int, datetime], Counts] | None = None


# --- what each fold counts --------------------------------------------------------------------------


def _range(lo: int, hi: int | None, field: str = "id") -> Q:
    q = Q(**{f"{field}__gt": lo})
    return q & Q(**{f"{field}__lte": hi}) if hi is not None else q


def _count_attempts(lo: int, hi: int | None, started_since: datetime | None = None) -> Counts:
    out: Counts = {}
    where = _range(lo, hi)
    if started_since is not None:
        where &= Q(started_at__gte=started_since)
    rows = (DeliveryAttempt.objects.filter(where).values_list("channel").order_by()
            .annotate(total=Count("id"), ok=Count("id", filter=Q(success=True)),
                      retries=Count("id", filter=Q(number__gt=1))))
    for channel, total, ok, retries in rows:
        out[("attempts", f"channel={channel},result=success")] = ok
        out[("attempts", f"channel={channel},result=failure")] = total - ok
        out[("retries", f"channel={channel}")] = retries
    return out


def _count_recent_attempts(lo: int, written_after: datetime) -> Counts:
    """The attempts past the fold, from the days they can be in: an attempt is stamped when its send
    started (by the worker's clock), before it is written; a day's margin covers both."""
    return _count_attempts(lo, None, started_since=written_after - ATTEMPT_CLOCK_MARGIN)


def _count_timeline(lo: int, hi: int | None) -> Counts:
    rows = (TimelineEntry.objects.filter(_range(lo, hi), kind__in=("acknowledged", "escalated"))
            .values_list("kind").order_by().annotate(n=Count("id")))
    return {("timeline", f"kind={kind}"): n for kind, n in rows}


def _histogram_counts(figure: str, hist: Histogram) -> Counts:
    out = {(figure, f"le={bound!r}"): n for bound, n in hist.buckets}  # cumulative: they add up too
    out[(figure, "count")] = hist.count
    out[(figure, "sum_us")] = round(hist.total * 1_000_000)
    return out


def _count_alerts(lo: int, hi: int | None) -> Counts:
    rows = Alert.objects.filter(_range(lo, hi)).values_list("severity").order_by().annotate(n=Count("id"))
    out: Counts = {("created", f"severity={severity}"): n for severity, n in rows}
    out.update(_histogram_counts("log_to_alert", fastpath.log_to_alert_latency(lo, hi)))
    return out


def rollup_label(tenant_id: int | None) -> str:
    """Ingest counts are keyed by tenant id (slugs may be renamed); "" for mixed batches."""
    return f"tenant_id={tenant_id}" if tenant_id is not None else ""


def tenant_of_label(labels: str) -> int | None:
    """``rollup_label``'s inverse."""
    return int(labels.split("=", 1)[1]) if labels.startswith("tenant_id=") else None


def _count_batches(lo: int, hi: int | None) -> Counts:
    out: Counts = {}
    rows = (IngestBatch.objects.filter(_range(lo, hi)).values_list("tenant_id").order_by()
            .annotate(accepted=Sum("event_count"), rejected=Sum("rejected_count")))
    for tenant_id, accepted, rejected in rows:
        label = rollup_label(tenant_id)
        out[("accepted", label)] = accepted or 0
        out[("rejected", label)] = rejected or 0
    return out


def _count_deliveries(lo: int, hi: int | None) -> Counts:
    n = Delivery.objects.filter(_range(lo, hi), channel="webhook", downgraded_at__isnull=False).count()
    return {("downgrades", ""): n}


def _pin_deliveries(lo: int, hi: int) -> int | None:
    return Delivery.objects.filter(_range(lo, hi), state__in=UNFINISHED).aggregate(first=Min("id"))["first"]


def _count_first_deliveries(lo: int, hi: int | None) -> Counts:
    return _histogram_counts("alert_to_delivery", fastpath.alert_to_delivery_latency(lo, hi))


def _pin_first_deliveries(lo: int, hi: int) -> int | None:
    """The first alert that may still get its first delivery: one with an unfinished alert.triggered
    row, or an active alert held by a silence (it notifies when unsilenced)."""
    unfinished = (Delivery.objects.filter(_range(lo, hi, "alert_id"), event_type=EVENT_TRIGGERED,
                                          state__in=UNFINISHED).aggregate(first=Min("alert_id"))["first"])
    silenced = (Alert.objects.filter(_range(lo, hi), silence_id__isnull=False, state__in=ACTIVE_STATES)
                .aggregate(first=Min("id"))["first"])
    return min((p for p in (unfinished, silenced) if p is not None), default=None)


FOLDS = {f.name: f for f in (
    Fold("attempts", DeliveryAttempt, _count_attempts, time_field="started_at", recent=_count_recent_attempts),
    Fold("batches", IngestBatch, _count_batches),
    Fold("timeline", TimelineEntry, _count_timeline),
    Fold("alerts", Alert, _count_alerts),
    Fold("deliveries", Delivery, _count_deliveries, _pin_deliveries),
    Fold("first_delivery", Alert, _count_first_deliveries, _pin_first_deliveries),
)}


# --- reading (in the scrape's snapshot) ---------------------------------------------------------------


_scrape_totals: ContextVar[dict[str, Counts] | None] = ContextVar("fold_totals", default=None)


@contextmanager
def counted_once() -> Iterator[None]:
    """Within it (one scrape, in one snapshot) each fold's totals are counted once, however many
    families read them (the attempts' feed two, the alerts' two)."""
    token = _scrape_totals.set({})
    try:
        yield
    finally:
        _scrape_totals.reset(token)


def totals(name: str) -> Counts:
    """Folded counts plus the rows past the fold: the exact all-time figures of fold ``name``.
    Read-only for the caller: within ``counted_once`` every caller gets the same dict."""
    memo = _scrape_totals.get()
    if memo is not None and name in memo:
        return memo[name]
    fold = FOLDS[name]
    lo, at = MetricFold.objects.filter(name=name).values_list("folded_to", "folded_at").first() or (0, None)
    if fold.recent is not None and at is not None:
        out = dict(fold.recent(lo, datetime.fromtimestamp(at, tz=timezone.utc)))
    else:
        out = dict(fold.count(lo, None))
    prefix = f"fold:{name}:"
    for figure, labels, value in MetricRollup.objects.filter(name__startswith=prefix).values_list(
            "name", "labels", "value"):
        key = (figure[len(prefix):], labels)
        out[key] = out.get(key, 0) + value
    if memo is not None:
        memo[name] = out
    return out


def histogram(counts: Counts, figure: str) -> Histogram:
    return Histogram(buckets=[(bound, counts.get((figure, f"le={bound!r}"), 0)) for bound in LATENCY_BUCKETS],
                     count=counts.get((figure, "count"), 0), total=counts.get((figure, "sum_us"), 0) / 1_000_000)


# --- folding --------------------------------------------------------------------------------------------


_last_run: dict[str, float] = {}


def advance_if_due() -> None:
    """The scrape's call: fold at most every METRICS_FOLD_EVERY_SECONDS in this process; never raises."""
    now = time.time()
    if now - _last_run.get("all", 0.0) < settings.METRICS_FOLD_EVERY_SECONDS:
        return
    _last_run["all"] = now
    try:
        advance()
    except Exception:  # noqa: BLE001 - the scrape still answers, counting the rows past the fold
        logger.exception("metrics: folding counters failed; the scrape counts from the last fold")


def advance(*, now: float | None = None, chunk: int = FOLD_CHUNK) -> dict[str, int]:
    """Fold every fold as far as it may go (module docstring); returns {fold: folded_to}."""
    return {name: _advance(fold, now if now is not None else time.time(), chunk) for name, fold in FOLDS.items()}


def _advance(fold: Fold, now: float, chunk: int) -> int:
    delay = settings.METRICS_FOLD_DELAY_SECONDS
    with transaction.atomic():
        state = _locked(fold.name)
        candidates = [c for c in state.candidates if c[1] > state.folded_to]
        newest = fold.model.objects.aggregate(top=Max("id"))["top"] or 0
        if not candidates or now - candidates[-1][0] >= settings.METRICS_FOLD_EVERY_SECONDS:
            candidates.append([now, newest])
        ready = [c for c in candidates if c[0] <= now - delay]
        # Chunks count from the first row past the fold (ids may start anywhere).
        first = fold.model.objects.filter(id__gt=state.folded_to).aggregate(first=Min("id"))["first"]
        start = max(state.folded_to, (first or 1) - 1)
        target = min(ready[-1][1], start + chunk) if ready else state.folded_to
        if fold.pin is not None and target > state.folded_to:
            pinned = fold.pin(state.folded_to, target)
            if pinned is not None:
                target = pinned - 1
        if target > state.folded_to:
            _add(fold.name, fold.count(state.folded_to, target))
            state.folded_to = target
        if fold.time_field is not None:
            state.folded_at = _written_after(fold, state, [c[0] for c in candidates if c[1] <= state.folded_to])
        state.candidates = [c for c in candidates if c[1] > state.folded_to]
        state.save(update_fields=["folded_to", "candidates", "folded_at", "updated_at"])
        return state.folded_to


def _written_after(fold: Fold, state: MetricFold, passed: list[float]) -> float | None:
    """The time the scrape reads the rows past the fold from (less a day's clock margin). No row
    past the fold was visible at a candidate's time at or below it, so they were written after the
    newest such time (a fold in chunks may pass none: the last bound stands). But never after the
    oldest time stamped on a row past the fold now: a row a scrape has counted stays counted, even
    one stamped by a clock more than the margin behind (the counter would go down)."""
    bound = max(passed) if passed else state.folded_at
    if bound is None:
        return None
    oldest = fold.model.objects.filter(id__gt=state.folded_to).aggregate(t=Min(fold.time_field))["t"]
    return min(bound, oldest.timestamp()) if oldest is not None else bound


def _add(name: str, counts: Counts) -> None:
    for (figure, labels), value in sorted(counts.items()):
        if not value:
            continue
        row, created = MetricRollup.objects.get_or_create(name=f"fold:{name}:{figure}", labels=labels,
                                                          defaults={"value": value})
        if not created:
            MetricRollup.objects.filter(pk=row.pk).update(value=row.value + value)


def folded_to(name: str, *, lock: bool = False) -> int:
    """How far fold ``name`` went; ``lock``: hold its row until the caller's transaction ends (the
    retention purge, so no fold counts the rows it is deleting and folding itself)."""
    if lock:
        return _locked(name).folded_to
    return MetricFold.objects.filter(name=name).values_list("folded_to", flat=True).first() or 0


def _locked(name: str) -> MetricFold:
    """Fold ``name``'s row, made if missing, locked until the caller's transaction ends."""
    MetricFold.objects.get_or_create(name=name)
    return MetricFold.objects.select_for_update().get(name=name)
