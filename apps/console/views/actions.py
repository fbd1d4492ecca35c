"""Alert actions: plain POST forms (they work without JavaScript) that call the lifecycle
services, then redirect back with a message saying what happened or why not (a 409 from the
service, e.g. someone else acknowledged first, is shown as its text)."""
from __future__ import annotations

from typing import Callable

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from apps.alerts import services
from apps.alerts.models import Alert
from apps.alerts.selectors import alert_list, user_for_assignment, AlertFilters
from apps.core.errors import ApplicationError

from ..access import console_view, visible_alert
from ..forms import AddNoteForm, AssignForm, BulkAckForm, FallbackForm, NoteForm, SuppressForm


def _back(request: HttpRequest, default: str) -> HttpResponseRedirect:
    target = request.POST.get("next") or ""
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        target = default
    return HttpResponseRedirect(target)


def _form_error(form: forms.Form) -> str:
    return "; ".join(f"{name}: {' '.join(errs)}" if name != "__all__" else " ".join(errs)
                     for name, errs in form.errors.items())


def _alert_action(form_class: type[forms.Form] | None,
                  act: Callable[[HttpRequest, Alert, dict], str]) -> Callable[..., HttpResponse]:
    """Build a view: load the visible alert (404), require operate rights on its tenant (403),
    validate the form, run ``act`` (which returns the success message), redirect back."""

    @require_POST
    @console_view
    def view(request: HttpRequest, alert_id: int) -> HttpResponse:
        alert = visible_alert(request, alert_id)
        if not request.viewer.can_operate(alert.tenant_id):
            raise PermissionDenied("your role is read-only for this tenant's alerts")
        back = _back(request, reverse("console:alert-detail", args=[alert.pk]))
        form = form_class(request.POST) if form_class else None
        if form is not None and not form.is_valid():
            messages.error(request, f"Alert #{alert.pk} unchanged: {_form_error(form)}")
            return back
        try:
            messages.success(request, act(request, alert, form.cleaned_data if form else {}))
        except ApplicationError as exc:
            messages.error(request, exc.message)
        return back

    view.__name__ = act.__name__
    return view


def _acknowledge(request, alert, data) -> str:
    services.alert_acknowledge(alert_id=alert.pk, actor=request.user, note=data.get("note", ""))
    return f"Acknowledged alert #{alert.pk}."


def _resolve(request, alert, data) -> str:
    services.alert_resolve(alert_id=alert.pk, actor=request.user, note=data.get("note", ""))
    return f"Resolved alert #{alert.pk}."


def _assign(request, alert, data) -> str:
    name = (data.get("assignee") or "").strip()
    if name == "me":
        name = request.user.get_username()
    assignee = user_for_assignment(name) if name else None
    services.alert_assign(alert_id=alert.pk, actor=request.user, assignee=assignee)
    if assignee is None:
        return f"Alert #{alert.pk} is now unassigned."
    return f"Alert #{alert.pk} assigned to {'you' if assignee.pk == request.user.pk else assignee.get_username()}."


def _note(request, alert, data) -> str:
    services.alert_add_note(alert_id=alert.pk, actor=request.user, text=data["text"])
    return f"Note added to alert #{alert.pk}."


def _suppress(request, alert, data) -> str:
    updated = services.alert_suppress(alert_id=alert.pk, actor=request.user, duration=data["duration"],
                                      reason=data["reason"])
    return f"Alert #{alert.pk} suppressed until {updated.suppressed_until:%Y-%m-%d %H:%M} UTC."


def _unsuppress(request, alert, data) -> str:
    updated = services.alert_unsuppress(alert_id=alert.pk, actor=request.user, note=data.get("note", ""))
    return f"Alert #{alert.pk} is {updated.state.lower()} again."


def _fallback(request, alert, data) -> str:
    delivery = services.alert_send_fallback(alert=alert, channel=data["channel"], actor=request.user)
    outcome = "sent" if delivery.state == "DELIVERED" else f"{delivery.state.lower()} (will be retried)"
    if delivery.last_error:
        outcome += f": {delivery.last_error[:200]}"
    return f"Fallback {data['channel']} for alert #{alert.pk} to {', '.join(delivery.recipients)}: {outcome}."


acknowledge = _alert_action(NoteForm, _acknowledge)
resolve = _alert_action(NoteForm, _resolve)
assign = _alert_action(AssignForm, _assign)
add_note = _alert_action(AddNoteForm, _note)
suppress = _alert_action(SuppressForm, _suppress)
unsuppress = _alert_action(NoteForm, _unsuppress)
fallback = _alert_action(FallbackForm, _fallback)


@require_POST
@console_view
def bulk_acknowledge(request: HttpRequest) -> HttpResponse:
    """Acknowledge the ticked alerts this user may work; the rest are reported, not silently lost."""
    back = _back(request, reverse("console:alert-list"))
    form = BulkAckForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Tick at least one alert to acknowledge.")
        return back
    viewer = request.viewer
    operable = viewer.operable_tenant_ids()
    if operable == []:
        raise PermissionDenied("your role is read-only")
    wanted = set(form.cleaned_data["ids"])
    tenant_ids = viewer.tenant_ids if operable is None else [
        t for t in operable if viewer.tenant_ids is None or t in viewer.tenant_ids]
    qs = alert_list(tenant_ids=tenant_ids, filters=AlertFilters()).filter(pk__in=wanted)
    done = services.alerts_acknowledge_bulk(alerts=qs, actor=request.user, note=form.cleaned_data["note"])
    if done:
        messages.success(request, f"Acknowledged {len(done)} alert(s): {', '.join(f'#{i}' for i in done)}.")
    skipped = len(wanted) - len(done)
    if skipped:
        messages.warning(request, f"{skipped} ticked alert(s) were not acknowledged: already acknowledged, "
                                  "resolved or suppressed, or not yours to work.")
    return back
