"""Retention of the rules' own state, purged by apps.ops.retention: idle window rows
(``WindowState``) and old metric rollups with the series left without any.

Idle windows (``idle``).

The engine keeps a window row per (rule, tenant, group) it ever counted, and nothing else ever
removed one. Groups keyed by more than tenant and plugin come and go: the default pack's brute-force
rule keeps one per source IP, so every address that ever failed a login left a row behind, read by
nothing and scanned by every spike rule's evaluation. A row is idle, and purged, once nothing it
holds can matter again:

- its counts are all outside any window: not updated for longer than the longest window a row can
  span (24 h, the schema's cap on a log window, an override's, and a spike rule's two timeframes)
  plus the ingest clock skew allowed ahead (a bucket in the future counts) plus an hour;
- no active alert of it is open (the engine feeds new matches into that alert; a row pointing at a
  resolved one is like none);
- its cooldown is over, by the longest cooldown of any log or spike rule or override (the admin's
  and the packs').

The age is judged at the time the engine judges windows at: the purge passes the arrival of the
oldest batch still waiting for detection when one is older than now (a backlog).

A group that comes back after its row was purged starts an empty window, as it would have with
the row: no count it held was still in a window. ``since`` (when a spike group was first seen)
restarts too, as it does whenever a spike group's window runs empty.

Metric rollups and series (``old_rollups``, ``stale_series``). Rollups were "series x minutes" for
good: 10,000 series sent every minute are 14.4 million rows a day. They are kept
METRICS_RETENTION_DAYS (9), never less than the metric rules reach back (``RULES_REACH``: a
seasonal baseline's seven days, an absence's seven days and its day of lookback) plus an hour. A
series with no rollup left goes too, so series that stopped (a pod's labels, a renamed host) no
longer hold places of METRICS_MAX_SERIES_PER_TENANT. An intake request that resumes the series
while it is deleted fails its foreign key at commit (PostgreSQL checks it then) and is redone once
from the database (``apps.rules.metrics.store_samples``), creating the series anew.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet

from apps.alerts.models import ACTIVE_STATES, Alert

from .anomaly import DAY_S, SEASON_DAYS
from .metric_eval import ABSENCE_LOOKBACK_S
from .metric_spec import MAX_ABSENCE_S, MAX_METRIC_WINDOW_S
from .models import MetricRollup, MetricSeries, WindowState
from .selectors import load_snapshot
from .spec import MAX_WINDOW_S

MARGIN = timedelta(hours=1)


def idle(now: datetime) -> tuple[datetime, QuerySet, Callable[[list[int]], int]]:
    """(cutoff, the idle rows, a chunk deleter re-checking every condition) for apps.ops.retention.
    ``now``: the time the engine judges windows at, i.e. no later than the oldest batch still waiting
    for detection (the caller's business)."""
    # No window row spans more than MAX_WINDOW_S: the rule schema caps log windows and overrides at
    # it and a spike rule's two timeframes at 2 x MAX_TIMEFRAME_S (tests/rules/test_retention.py).
    # Cooldowns have no cap: the longest of the rules and overrides as the engine compiles them, from
    # the packs (in a rule's spec) and the admin (RuleOverride rows).
    snapshot = load_snapshot()
    overrides = [o for spec in snapshot.specs for o in spec.overrides]
    overrides += [o for rows in snapshot.rows.values() for o in rows.values()]
    cooldown = max([spec.cooldown_s for spec in snapshot.specs] + [o.cooldown_s or 0 for o in overrides] + [0])
    cutoff = now - timedelta(seconds=MAX_WINDOW_S + settings.INGEST_MAX_FUTURE_SECONDS) - MARGIN
    cooled = min(cutoff, now - timedelta(seconds=cooldown))
    open_alert = Exists(Alert.objects.filter(pk=OuterRef("alert_id"), state__in=ACTIVE_STATES))
    rows = (WindowState.objects.filter(updated_at__lt=cutoff)
            .filter(Q(last_fired_at__isnull=True) | Q(last_fired_at__lt=cooled))
            .filter(Q(alert_id__isnull=True) | ~open_alert))

    def delete(ids: list[int]) -> int:
        # Locked first, skipping the rows a detect batch holds (it locks them in its own order: waiting
        # here could deadlock with it); then the conditions again, with what committed before the lock.
        free = list(WindowState.objects.select_for_update(skip_locked=True).filter(pk__in=ids)
                    .values_list("pk", flat=True))
        return rows.filter(pk__in=free).delete()[0]

    return cutoff, rows, delete


# How far back a metric rule may read rollups: a seasonal baseline (the same half hour on each of the
# last seven days), a "previous" one (the hour before a window), an absence (its ``for`` and a day).
RULES_REACH = timedelta(seconds=max(SEASON_DAYS * DAY_S + 1800, MAX_METRIC_WINDOW_S + 3600,
                                    MAX_ABSENCE_S + ABSENCE_LOOKBACK_S))


def metrics_cutoff(now: datetime) -> datetime:
    return now - max(timedelta(days=settings.METRICS_RETENTION_DAYS), RULES_REACH + MARGIN)


def old_rollups(now: datetime) -> tuple[datetime, QuerySet, Callable[[list[int]], int]]:
    """(cutoff, the rollups of minutes before it, a chunk deleter re-checking it)."""
    cutoff = metrics_cutoff(now)

    def delete(ids: list[int]) -> int:
        return MetricRollup.objects.filter(pk__in=ids, minute__lt=cutoff).delete()[0]

    return cutoff, MetricRollup.objects.filter(minute__lt=cutoff), delete


def stale_series(now: datetime) -> tuple[datetime, QuerySet, Callable[[list[int]], int]]:
    """(cutoff, the series created before it with no rollup since, a chunk deleter): run after
    ``old_rollups``, so what it deletes has no rollup at all."""
    cutoff = metrics_cutoff(now)
    recent = Exists(MetricRollup.objects.filter(series_id=OuterRef("pk"), minute__gte=cutoff))
    rows = MetricSeries.objects.filter(created_at__lt=cutoff).filter(~recent)

    def delete(ids: list[int]) -> int:
        # Locked first (skipping rows another purge holds), then the condition again, with what
        # committed before the lock. An uncommitted rollup is not seen: its request is redone.
        free = list(MetricSeries.objects.select_for_update(skip_locked=True).filter(pk__in=ids)
                    .values_list("pk", flat=True))
        gone = rows.filter(pk__in=free).values_list("pk", flat=True)
        return MetricSeries.objects.filter(pk__in=list(gone)).delete()[1].get(MetricSeries._meta.label, 0)

    return cutoff, rows, delete
