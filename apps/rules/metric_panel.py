"""Selector for the console's metric panel: a metric alert's series over the last hour, from
rollups, as SVG polyline points (server-rendered; no JavaScript, no chart library)."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Sum

from apps.core import clock
from apps.rules.models import MetricRollup

WIDTH, HEIGHT, MINUTES = 240, 48, 60


def metric_panel(alert: Any) -> dict[str, Any] | None:
    """Value, threshold/baseline and sparkline points of a ``metric_rule`` alert; None otherwise.

    The series are those the alert names (``annotations.series_ids``); each minute plots the mean
    of their samples. One aggregate query over at most 60 minutes x 10 series.
    """
    if getattr(alert, "source", "") != "metric_rule":
        return None
    ids = (alert.annotations or {}).get("series_ids") or []
    since = clock.now() - timedelta(minutes=MINUTES)
    rows = list(MetricRollup.objects.filter(series_id__in=ids, minute__gte=since).values("minute")
                .annotate(total=Sum("sum"), n=Sum("count")).order_by("minute").values_list("minute", "total", "n"))
    points = [(m, total / n) for m, total, n in rows if n]
    svg = ""
    if points:
        values = [v for _, v in points]
        if alert.threshold is not None and alert.annotations.get("kind") == "threshold":
            values.append(alert.threshold)
        lo, hi = min(values), max(values)
        span = (hi - lo) or 1.0
        t0 = since.timestamp()
        svg = " ".join(f"{(m.timestamp() - t0) / (MINUTES * 60) * WIDTH:.1f},{HEIGHT - (v - lo) / span * HEIGHT:.1f}"
                       for m, v in points)
    return {"alert": alert, "points": svg, "width": WIDTH, "height": HEIGHT, "samples": len(points),
            "metric": alert.annotations.get("metric", ""), "baseline": alert.baseline or {}}
