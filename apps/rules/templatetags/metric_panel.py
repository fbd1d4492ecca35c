"""``{% metric_panel alert %}``: the metric panel of the console's alert detail (empty for other sources)."""
from __future__ import annotations

from django import template

from apps.rules.metric_panel import metric_panel as panel

register = template.Library()


@register.inclusion_tag("console/_metric_panel.html")
def metric_panel(alert) -> dict:
    return {"panel": panel(alert)}
