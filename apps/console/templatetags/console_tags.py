"""Small presentation helpers: severity and state badges (shape + text, not colour alone),
compact durations and ages."""
from __future__ import annotations

from datetime import datetime

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from apps.core import clock

register = template.Library()

# A distinct shape per severity, so the list reads in greyscale and for colour-blind eyes.
SEVERITY_GLYPHS = {"info": "○", "warning": "▲", "critical": "◆", "emergency": "✱"}
STATE_GLYPHS = {"OPEN": "●", "ESCALATED": "⇡", "ACKNOWLEDGED": "✓", "SUPPRESSED": "‖", "RESOLVED": "✔"}


@register.filter
def sev(severity: str) -> SafeString:
    return format_html('<span class="sev sev-{0}"><span aria-hidden="true">{1}</span> {0}</span>',
                       severity, SEVERITY_GLYPHS.get(severity, "?"))


@register.filter
def state(value: str) -> SafeString:
    return format_html('<span class="state state-{0}"><span aria-hidden="true">{1}</span> {2}</span>',
                       value.lower(), STATE_GLYPHS.get(value, ""), value.lower())


@register.filter
def duration(seconds: float | int | None) -> str:
    """4m 12s, 2h 05m, 3d 4h; an em dash when there is no figure."""
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m {secs:02d}s" if secs else f"{minutes}m"
    return f"{secs}s"


@register.filter
def ago(value: datetime | None) -> str:
    if value is None:
        return "—"
    delta = (clock.now() - value).total_seconds()
    return "just now" if abs(delta) < 5 else (f"{duration(delta)} ago" if delta > 0 else f"in {duration(-delta)}")


@register.filter
def pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


@register.filter
def get(mapping: dict, key: str):
    return mapping.get(key) if mapping else None
