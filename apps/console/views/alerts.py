"""The alert list (with its live-refresh partial) and the alert detail page."""
from __future__ import annotations

from django.conf import settings
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from apps.alerts.models import AlertState, Severity
from apps.alerts.selectors import alert_list
from apps.delivery.selectors import deliveries_for_alert

from .. import selectors
from ..access import console_view, visible_alert
from ..forms import STATE_TABS, AddNoteForm, AlertFilterForm, AssignForm, NoteForm, SuppressForm
from .remediation import panel as remediation_panel

PAGE_SIZE = 50
TAB_LABELS = {"active": "Active", "all": "All", **{s: label for s, label in AlertState.choices}}


class CountedPaginator(Paginator):
    """A Paginator told its total up front (no COUNT query of its own)."""

    def __init__(self, object_list, per_page, *, count: int, **kwargs):
        super().__init__(object_list, per_page, **kwargs)
        self._known_count = count

    @property
    def count(self) -> int:
        return self._known_count


def _list_context(request: HttpRequest) -> dict:
    viewer = request.viewer
    form = AlertFilterForm(request.GET, username=request.user.get_username())
    filters = form.to_filters()
    qs = selectors.sorted_alerts(alert_list(tenant_ids=viewer.tenant_ids, filters=filters), form.sort_key)
    cap = selectors.SEARCH_COUNT_CAP if filters.q else None
    counts, capped = selectors.state_counts(tenant_ids=viewer.tenant_ids, filters=filters, cap=cap)
    # The tab counts already hold this tab's total: the paginator takes it instead of running a
    # second COUNT(*) over the same rows (with a search, each count is a scan of the table).
    total, total_capped = counts[form.tab], False
    if capped:  # many matches: count this tab's own, up to the cap (the matches are dense, it stops early)
        total, total_capped = selectors.capped_count(qs, cap)
    page = CountedPaginator(qs, PAGE_SIZE, count=total).get_page(request.GET.get("page"))

    def tab_count(key: str) -> int | str:
        if key == form.tab:
            return f"{cap:,}+" if total_capped else total
        return f"{counts[key]:,}+" if capped else counts[key]  # capped: at least this many

    tabs = [{"key": key, "label": TAB_LABELS[key], "count": tab_count(key), "current": key == form.tab}
            for key in STATE_TABS]
    filtered = any(form.values.get(k) for k in ("severity", "tenant", "plugin", "rule", "category", "assignee", "q",
                                                 "range", "since", "until"))
    return {"form": form, "page": page, "alerts": page.object_list, "tabs": tabs, "tab": form.tab,
            "filtered": filtered, "can_operate": viewer.can_operate(), "sort": form.sort_key,
            "count_capped": total_capped, "count_cap": cap}


@require_GET
@console_view
def alert_list_page(request: HttpRequest) -> HttpResponse:
    context = _list_context(request)
    context.update(choices=selectors.filter_choices(tenant_ids=request.viewer.tenant_ids),
                   severities=Severity.choices, sorts=list(selectors.SORTS),
                   bulk_users=selectors.assignable_usernames(tenant_ids=request.viewer.tenant_ids)
                   if context["can_operate"] else [])
    return render(request, "console/alert_list.html", context)


@require_GET
@console_view
def filter_options(request: HttpRequest, kind: str) -> JsonResponse:
    """``{"options": [...]}``: tenant or plugin slugs containing ``q`` for the filter inputs'
    datalists (console.js asks as one types), so the page never lists every plugin."""
    if kind not in ("tenant", "plugin"):
        raise Http404(f"no filter options for {kind!r}")
    q = request.GET.get("q", "").strip()[:63]
    response = JsonResponse({"options": selectors.slug_options(kind=kind, tenant_ids=request.viewer.tenant_ids, q=q)})
    response["Cache-Control"] = "no-store"
    return response


@require_GET
@console_view
def alert_rows(request: HttpRequest) -> HttpResponse:
    """The tabs and table body alone, polled by console.js every few seconds."""
    response = render(request, "console/_alert_rows.html", _list_context(request))
    response["Cache-Control"] = "no-store"
    return response


@require_GET
@console_view
def alert_detail(request: HttpRequest, alert_id: int) -> HttpResponse:
    viewer = request.viewer
    alert = visible_alert(request, alert_id)
    deliveries = deliveries_for_alert(alert.pk)
    can_operate = viewer.can_operate(alert.tenant_id)
    context = {
        "alert": alert,
        "deliveries": deliveries,
        "timeline": selectors.merged_timeline(alert=alert, deliveries=deliveries),
        "evidence": selectors.evidence_lines(alert=alert),
        "can_operate": can_operate,
        "users": selectors.assignable_users(tenant_id=alert.tenant_id) if can_operate else [],
        "note_form": NoteForm(), "add_note_form": AddNoteForm(), "assign_form": AssignForm(),
        "suppress_form": SuppressForm(),
        "active": alert.is_active,
        "remediation": remediation_panel(alert),
        "attempt_retention_days": settings.DELIVERY_ATTEMPT_RETENTION_DAYS,
    }
    return render(request, "console/alert_detail.html", context)
