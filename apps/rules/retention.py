"""Retention of idle window rows (``WindowState``), purged by apps.ops.retention.

The engine keeps a window row per (rule, tenant, group) it ever counted, and nothing else ever
removed one. Groups keyed by more than tenant and plugin come and go: the default pack's brute-force
rule keeps one per source IP, so every address that ever failed a login left a row behind, read by
nothing and scanned by every spike rule's evaluation. A row is idle, and purged, once nothing it
holds can matter again:

- its counts are all outside any window: not updated for longer than the longest window a row can
  span (24 h: a log window, or a spike rule's two timeframes; longer if a rule says so) plus the
  ingest clock skew allowed ahead (a bucket in the future counts) plus an hour;
- no active alert of it is open (the engine feeds new matches into that alert; a row pointing at a
  resolved one is like none);
- its cooldown is over, by the longest cooldown of any log or spike rule or override.

A group that comes back after its row was purged starts an empty window, as it would have with
the row: no count it held was still in a window. ``since`` (when a spike group was first seen)
restarts too, as it does whenever a spike group's window runs empty.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Exists, Max, OuterRef, Q, QuerySet

from apps.alerts.models import ACTIVE_STATES, Alert

from .models import LogRule, RuleOverride, WindowState
from .spec import MAX_WINDOW_S

MARGIN = timedelta(hours=1)
WINDOW_KINDS = ("log", "spike")  # the rule kinds that count in WindowState


def idle(now: datetime) -> tuple[datetime, QuerySet, Callable[[list[int]], int]]:
    """(cutoff, the idle rows, a chunk deleter re-checking every condition) for apps.ops.retention."""
    rules = LogRule.objects.filter(kind__in=WINDOW_KINDS).aggregate(
        log=Max("window_seconds", filter=Q(kind="log")), spike=Max("window_seconds", filter=Q(kind="spike")),
        c=Max("cooldown_seconds"))
    overrides = RuleOverride.objects.aggregate(w=Max("window_seconds"), c=Max("cooldown_seconds"))
    # A spike rule's row spans two timeframes (its window_seconds holds one).
    span = max(MAX_WINDOW_S, rules["log"] or 0, overrides["w"] or 0, 2 * (rules["spike"] or 0))
    cutoff = now - timedelta(seconds=span + settings.INGEST_MAX_FUTURE_SECONDS) - MARGIN
    cooled = min(cutoff, now - timedelta(seconds=max(rules["c"] or 0, overrides["c"] or 0)))
    open_alert = Exists(Alert.objects.filter(pk=OuterRef("alert_id"), state__in=ACTIVE_STATES))
    rows = (WindowState.objects.filter(updated_at__lt=cutoff)
            .filter(Q(last_fired_at__isnull=True) | Q(last_fired_at__lt=cooled))
            .filter(Q(alert_id__isnull=True) | ~open_alert))

    def delete(ids: list[int]) -> int:
        # The conditions again, in the DELETE: a row the engine counted into since the chunk was read
        # (PostgreSQL re-checks a row it waited for) has a new updated_at and stays.
        return rows.filter(pk__in=ids).delete()[0]

    return cutoff, rows, delete
