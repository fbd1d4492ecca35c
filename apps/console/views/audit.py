"""The audit log: filtered pages and a streamed CSV export of the same filter."""
from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from apps.audit.exports import csv_rows
from apps.audit.selectors import audit_actions, audit_list
from apps.core import clock

from ..access import console_view
from ..forms import AuditFilterForm

PAGE_SIZE = 100


def _events(request: HttpRequest):
    form = AuditFilterForm(request.GET)
    # Tenant members see their tenants' events only; staff (auditors included) see everything.
    return form, audit_list(tenant_ids=request.viewer.tenant_ids, filters=form.to_filters())


@require_GET
@console_view
def audit_log(request: HttpRequest) -> HttpResponse:
    form, events = _events(request)
    page = Paginator(events, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "console/audit.html", {"form": form, "page": page, "actions": audit_actions(),
                                                  "tenants": request.viewer.tenant_slugs})


@require_GET
@console_view
def audit_export(request: HttpRequest) -> StreamingHttpResponse:
    _, events = _events(request)
    response = StreamingHttpResponse(csv_rows(events), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="audit-{clock.now():%Y%m%dT%H%M%SZ}.csv"'
    response["Cache-Control"] = "no-store"
    return response
