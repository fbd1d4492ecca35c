"""The health map and an alert's diagnostic report page (apps.reports does the work)."""
from __future__ import annotations

from itertools import groupby

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from apps.core import clock
from apps.core.client_ip import client_ip
from apps.reports.diagnostics import generate
from apps.reports.healthmap import health_map
from apps.reports.models import ReportFormat
from apps.reports.services import issue_report_links
from apps.tenants.models import Tenant

from ..access import console_view, visible_alert


@require_GET
@console_view
def health_map_page(request: HttpRequest) -> HttpResponse:
    viewer = request.viewer
    slug = request.GET.get("tenant") or ""
    problems_only = request.GET.get("show") == "problems"
    now = clock.now()
    cells = health_map(tenant_ids=viewer.tenant_ids, tenant_slug=slug or None, now=now)
    shown = [c for c in cells if c.active or c.stale] if problems_only else cells
    context = {
        "groups": [(tenant, list(rows)) for tenant, rows in groupby(shown, key=lambda c: c.tenant)],
        "total": len(cells), "shown": len(shown),
        "alerting": sum(1 for c in cells if c.active), "stale": sum(1 for c in cells if c.stale),
        "silenced": sum(1 for c in cells if c.silence == "silenced"),
        "tenant": slug, "problems_only": problems_only, "stale_after": settings.HEALTH_MAP_STALE_SECONDS,
        "tenants": viewer.tenant_slugs if viewer.tenant_ids is not None else list(
            Tenant.objects.order_by("slug").values_list("slug", flat=True)),
    }
    return render(request, "console/health_map.html", context)


@require_GET
@console_view
def diagnostic_report_page(request: HttpRequest, alert_id: int) -> HttpResponse:
    alert = visible_alert(request, alert_id)
    report, _ = generate(alert, ReportFormat.PAGE)
    issued = issue_report_links(
        alert=alert, actor=request.user, ip=client_ip(request),
        url_for=lambda name, token: request.build_absolute_uri(reverse(f"reports:{name}", args=[token])))
    response = render(request, "console/diagnostic_report.html",
                      {"alert": alert, "report": report, "meta": report.summary["report"], "links": issued})
    response["Cache-Control"] = "no-store"  # the page carries a working download link
    return response
