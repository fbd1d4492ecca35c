"""Metric alerts that stay in violation: the open alert follows the current value.

``update_metric_value`` is what a metric rule calls on every violating evaluation after the alert
fired: a guarded UPDATE on an active alert (value, baseline, last_seen, count) plus a timeline
line; lines within ``VALUE_COALESCE_SECONDS`` of the previous one are folded into it, so a long
violation writes about one line a minute, not four. No notification: the alert is already known.
"""
from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.db.models import F

from apps.core import clock

from .history import log_change
from .models import ACTIVE_STATES, Alert, TimelineEntry

VALUE_COALESCE_SECONDS = 60


def update_metric_value(*, alert_id: int, value: float, baseline: dict | None = None) -> bool:
    """Record ``value`` (and the anomaly ``baseline``) on active alert ``alert_id``.

    Returns False, changing nothing, when the alert is gone or no longer active (the caller then
    fires a new one).
    """
    now = clock.now()
    changes = dict(value=value, last_seen=now, updated_at=now, count=F("count") + 1)
    if baseline is not None:
        changes["baseline"] = baseline
    with transaction.atomic():
        if not Alert.objects.filter(pk=alert_id, state__in=ACTIVE_STATES).update(**changes):
            return False
        message = f"value {value:g}" + (f" (z {baseline['z']:.2f})" if baseline and "z" in baseline else "")
        recent = (TimelineEntry.objects.filter(alert_id=alert_id, kind=TimelineEntry.Kind.OCCURRENCE,
                                               at__gte=now - timedelta(seconds=VALUE_COALESCE_SECONDS))
                  .order_by("-at").first())
        if recent is not None:
            recent.message = message
            recent.data = {**recent.data, "value": value, "evaluations": recent.data.get("evaluations", 1) + 1}
            recent.save(update_fields=["message", "data"])
        else:
            alert = Alert.objects.get(pk=alert_id)
            log_change(alert, kind=TimelineEntry.Kind.OCCURRENCE, actor=None, message=message,
                       data={"value": value, "evaluations": 1})
    return True
