"""The dashboard: the figures of /api/v1/statistics (same selectors), plus what is active now
and a 24-hour chart."""
from __future__ import annotations

from datetime import timedelta

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from apps.alerts.models import Severity
from apps.alerts.selectors import alert_statistics
from apps.core import clock
from apps.delivery.selectors import delivery_statistics
from apps.tenants.models import Tenant

from .. import charts, selectors
from ..access import console_view

HOURS = 24


def dashboard_figures(*, tenant_ids: list[int] | None, now) -> dict:
    """The dashboard's numbers: ``alert_statistics`` as the API returns it, with ``delivery`` from
    the delivery app's selector when the statistics do not carry it yet."""
    stats = alert_statistics(tenant_ids=tenant_ids, hours=HOURS, now=now)
    if stats.get("delivery") is None:
        stats["delivery"] = delivery_statistics(tenant_ids=tenant_ids, since=now - timedelta(hours=HOURS))
    return stats


@require_GET
@console_view
def dashboard(request: HttpRequest) -> HttpResponse:
    viewer = request.viewer
    tenant_ids = viewer.tenant_ids
    slug = request.GET.get("tenant") or ""
    if slug:  # narrow to one tenant, as /api/v1/statistics?tenant= does
        wanted = list(Tenant.objects.filter(slug=slug).values_list("pk", flat=True))
        tenant_ids = wanted if tenant_ids is None else [t for t in tenant_ids if t in wanted]
    now = clock.now()
    stats = dashboard_figures(tenant_ids=tenant_ids, now=now)
    buckets = selectors.hourly_counts(tenant_ids=tenant_ids, now=now, hours=HOURS)
    active = selectors.active_by_severity(tenant_ids=tenant_ids)
    by_category = selectors.active_by_category(tenant_ids=tenant_ids)
    most = max((n for _name, n in by_category), default=0)
    context = {
        "stats": stats,
        "delivery": stats["delivery"],
        "active": [(s, label, active[s]) for s, label in reversed(Severity.choices)],
        "active_total": sum(active.values()),
        "chart": charts.hourly_bar_chart(buckets, label=f"Alerts per hour, last {HOURS} hours, by severity"),
        "chart_total": sum(b["total"] for b in buckets),
        "initial_gauge": charts.ratio_bar(stats["delivery"]["initial_success_rate"], label="initial success"),
        "cumulative_gauge": charts.ratio_bar(stats["delivery"]["cumulative_success_rate"], label="cumulative success"),
        "ack_gauge": charts.ratio_bar(stats["ack_rate"], label="acknowledgement rate"),
        "tenant": slug,
        "tenants": viewer.tenant_slugs if viewer.tenant_ids is not None else list(
            Tenant.objects.order_by("slug").values_list("slug", flat=True)),
        "hours": HOURS,
        "rules": selectors.rule_counts(),
        "categories": [(name, n, charts.ratio_bar(n / most, label=f"{name or 'no category'}: {n} active"))
                       for name, n in by_category],
        "severities": [s for s, _ in reversed(Severity.choices)],
    }
    return render(request, "console/dashboard.html", context)
