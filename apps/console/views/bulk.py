"""Bulk resolve, suppress and assign from the alert list: plain POST forms (no JavaScript needed)
calling the alerts' bulk services on the ticked alerts this user may work. The message names
what changed and, for everything else ticked, why not (wrong state, someone else's, not found)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.views.decorators.http import require_POST

from apps.alerts import services
from apps.alerts.models import Alert
from apps.alerts.selectors import AlertFilters, alert_list, user_for_assignment
from apps.core import clock
from apps.core.errors import ApplicationError

from ..access import Viewer, console_view
from ..forms import BulkAssignForm, BulkResolveForm, BulkSuppressForm
from .actions import _back, _form_error

NOT_YOURS = "not found or not yours to work"
LISTED_IDS = 20  # ids named per line of the message; the rest are counted


def workable_alerts(viewer: Viewer, ids: set[int]) -> QuerySet[Alert]:
    """The alerts among ``ids`` this viewer sees and may change; 403 for a read-only role.
    Other tenants' ids simply are not in the result (reported as not found, never touched)."""
    operable = viewer.operable_tenant_ids()
    if operable == []:
        raise PermissionDenied("your role is read-only")
    tenant_ids = viewer.tenant_ids if operable is None else [
        t for t in operable if viewer.tenant_ids is None or t in viewer.tenant_ids]
    return alert_list(tenant_ids=tenant_ids, filters=AlertFilters()).filter(pk__in=ids)


def _ids(ids: list[int]) -> str:
    shown = ", ".join(f"#{pk}" for pk in ids[:LISTED_IDS])
    return shown + (f" and {len(ids) - LISTED_IDS} more" if len(ids) > LISTED_IDS else "")


def skipped_message(skipped: dict[int, str]) -> str:
    """'Skipped 3 alert(s): #4, #5 is resolved; #9 not found or not yours to work.'"""
    by_reason: dict[str, list[int]] = {}
    for pk, reason in sorted(skipped.items()):
        by_reason.setdefault(reason, []).append(pk)
    return f"Skipped {len(skipped)} alert(s): " + "; ".join(
        f"{_ids(ids)} {reason}" for reason, ids in by_reason.items()) + "."


Run = Callable[[HttpRequest, QuerySet[Alert], dict], tuple[services.BulkOutcome, str]]


def _bulk_view(form_class: type[forms.Form], verb: str, run: Run) -> Callable[..., HttpResponse]:
    """Build a view: 403 for read-only roles, validate the form, ``run`` the service on the
    workable ticked alerts (it returns the outcome and the success message's opening), report."""

    @require_POST
    @console_view
    def view(request: HttpRequest) -> HttpResponse:
        back = _back(request, reverse("console:alert-list"))
        form = form_class(request.POST)
        valid = form.is_valid()
        wanted = set(form.cleaned_data.get("ids") or [])
        alerts = workable_alerts(request.viewer, wanted)
        if not wanted:
            messages.error(request, f"Tick at least one alert to {verb}.")
            return back
        if not valid:
            messages.error(request, f"Nothing changed: {_form_error(form)}")
            return back
        try:
            outcome, opening = run(request, alerts, form.cleaned_data)
        except ApplicationError as exc:
            messages.error(request, f"Nothing changed: {exc.message}")
            return back
        skipped = dict(outcome.skipped)
        skipped.update({pk: NOT_YOURS for pk in wanted - set(outcome.done) - set(skipped)})
        if outcome.done:
            messages.success(request, f"{opening} {len(outcome.done)} alert(s): {_ids(outcome.done)}.")
        if skipped:
            messages.warning(request, skipped_message(skipped))
        return back

    view.__name__ = f"bulk_{verb}"
    return view


def _resolve(request: HttpRequest, alerts: QuerySet[Alert], data: dict) -> tuple[services.BulkOutcome, str]:
    return services.alerts_resolve_bulk(alerts=alerts, actor=request.user, note=data["resolve_note"]), "Resolved"


def _suppress(request: HttpRequest, alerts: QuerySet[Alert], data: dict) -> tuple[services.BulkOutcome, str]:
    outcome = services.alerts_suppress_bulk(alerts=alerts, actor=request.user, duration=data["duration"],
                                            reason=data["reason"])
    return outcome, f"Suppressed until {clock.now() + data['duration']:%Y-%m-%d %H:%M} UTC"


def _assign(request: HttpRequest, alerts: QuerySet[Alert], data: dict) -> tuple[services.BulkOutcome, str]:
    name = data["assignee"].strip()
    if name == "me":
        name = request.user.get_username()
    assignee: Any = None if name == "none" else user_for_assignment(name)
    outcome = services.alerts_assign_bulk(alerts=alerts, actor=request.user, assignee=assignee)
    if assignee is None:
        return outcome, "Unassigned"
    return outcome, f"Assigned to {'you' if assignee.pk == request.user.pk else assignee.get_username()}"


bulk_resolve = _bulk_view(BulkResolveForm, "resolve", _resolve)
bulk_suppress = _bulk_view(BulkSuppressForm, "suppress", _suppress)
bulk_assign = _bulk_view(BulkAssignForm, "assign", _assign)
