"""Server-rendered SVG charts: no JavaScript library, readable without colour (every bar has a
<title> with its numbers, stacks keep a fixed severity order, and the legend is text)."""
from __future__ import annotations

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from apps.alerts.models import Severity

# Bottom to top: the most severe on top, where the eye lands first.
STACK_ORDER = (Severity.INFO, Severity.WARNING, Severity.CRITICAL, Severity.EMERGENCY)


def _nice_max(value: int) -> int:
    """Round the axis maximum up to 1, 2 or 5 x 10^n so gridlines land on round numbers."""
    if value <= 4:
        return 4
    magnitude = 10 ** (len(str(value)) - 1)
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def hourly_bar_chart(buckets: list[dict], *, width: int = 1200, height: int = 220, label: str = "") -> SafeString:
    """A stacked bar per hour. ``buckets``: [{"hour": datetime, "counts": {severity: n}, "total": n}]."""
    left, bottom, top, right = 34, 22, 8, 6
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = _nice_max(max((b["total"] for b in buckets), default=0))
    slot = plot_w / max(len(buckets), 1)
    bar_w = max(slot * 0.72, 1)
    parts = [format_html('<svg class="chart" viewBox="0 0 {} {}" role="img" aria-label="{}" '
                         'xmlns="http://www.w3.org/2000/svg">', width, height, label)]
    for i in range(5):  # gridlines and y labels at 0, 1/4 ... peak
        value = peak * i // 4
        y = top + plot_h - plot_h * i / 4
        parts.append(format_html('<line class="grid" x1="{}" x2="{}" y1="{}" y2="{}"/>'
                                 '<text class="axis" x="{}" y="{}" text-anchor="end">{}</text>',
                                 left, width - right, f"{y:.1f}", f"{y:.1f}", left - 4, f"{y + 3:.1f}", value))
    for i, bucket in enumerate(buckets):
        x = left + i * slot + (slot - bar_w) / 2
        y = top + plot_h
        hour = bucket["hour"]
        tip = f"{hour:%H:00}–{hour:%H:59} UTC: {bucket['total']} alert(s)" + "".join(
            f", {bucket['counts'][s]} {s}" for s in reversed(STACK_ORDER) if bucket["counts"].get(s))
        parts.append(format_html('<g class="bar" data-total="{}"><title>{}</title>', bucket["total"], tip))
        for severity in STACK_ORDER:
            n = bucket["counts"].get(severity, 0)
            if not n:
                continue
            h = plot_h * n / peak
            y -= h
            parts.append(format_html('<rect class="sev-{}" x="{}" y="{}" width="{}" height="{}"/>',
                                     severity, f"{x:.1f}", f"{y:.1f}", f"{bar_w:.1f}", f"{h:.1f}"))
        if bucket["total"] == 0:  # a hairline keeps empty hours visible as "zero", not "missing"
            parts.append(format_html('<rect class="zero" x="{}" y="{}" width="{}" height="1"/>',
                                     f"{x:.1f}", f"{top + plot_h - 1:.1f}", f"{bar_w:.1f}"))
        parts.append(mark_safe("</g>"))
        if i % 3 == 0:
            parts.append(format_html('<text class="axis" x="{}" y="{}" text-anchor="middle">{}</text>',
                                     f"{x + bar_w / 2:.1f}", height - 6, f"{hour:%H}h"))
    parts.append(mark_safe("</svg>"))
    return mark_safe("".join(str(p) for p in parts))


def ratio_bar(value: float | None, *, label: str) -> SafeString:
    """A thin horizontal gauge for a 0..1 rate (empty when there is no figure)."""
    pct = 0 if value is None else max(0.0, min(1.0, value)) * 100
    return format_html('<svg class="gauge" viewBox="0 0 100 6" preserveAspectRatio="none" role="img" aria-label="{}">'
                       '<rect class="track" width="100" height="6"/><rect class="fill" width="{}" height="6"/></svg>',
                       escape(label), f"{pct:.1f}")
