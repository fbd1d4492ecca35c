"""The alert detail's ticket and remediation buttons: plain POST forms (CSRF, no JavaScript needed)
that call apps.actions services and redirect back with what happened. An action that requires
confirmation needs its "I confirm" box ticked; without it the service refuses and says so."""
from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from apps.actions import remediation, tickets
from apps.actions.models import ActionRun, RemediationAction, Ticket, TicketBridge
from apps.alerts.models import Alert
from apps.core.errors import ApplicationError

from ..access import console_view, visible_alert


def panel(alert: Alert) -> dict:
    """What the alert detail shows of tickets and actions (its template's ``remediation``)."""
    return {
        "ticket": Ticket.objects.filter(alert=alert).first(),
        "bridge": TicketBridge.objects.filter(tenant_id=alert.tenant_id, enabled=True).first(),
        "actions": [a for a in RemediationAction.objects.filter(tenant_id=alert.tenant_id, enabled=True).order_by("name")
                    if not a.allowed_severities or alert.severity in a.allowed_severities],
        "runs": list(ActionRun.objects.filter(alert=alert).select_related("action")[:10]),
    }


def _operable(request: HttpRequest, alert_id: int) -> Alert:
    alert = visible_alert(request, alert_id)
    if not request.viewer.can_operate(alert.tenant_id):
        raise PermissionDenied("your role is read-only for this tenant's alerts")
    return alert


def _back(alert: Alert) -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("console:alert-detail", args=[alert.pk]))


@require_POST
@console_view
def create_ticket(request: HttpRequest, alert_id: int) -> HttpResponse:
    alert = _operable(request, alert_id)
    try:
        ticket = tickets.ticket_create(alert_id=alert.pk, actor=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return _back(alert)
    if ticket.state == Ticket.State.FAILED:
        messages.error(request, f"The tracker did not create the ticket: {ticket.last_error}")
    else:
        messages.success(request, f"Ticket {ticket.key} created.")
    return _back(alert)


@require_POST
@console_view
def run_action(request: HttpRequest, alert_id: int, name: str) -> HttpResponse:
    alert = _operable(request, alert_id)
    action = RemediationAction.objects.filter(tenant_id=alert.tenant_id, name=name).first()
    if action is None:
        messages.error(request, f"No action {name!r} for this tenant.")
        return _back(alert)
    try:
        run = remediation.action_run(action=action, alert=alert, actor=request.user,
                                     confirm=request.POST.get("confirm") == "yes")
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return _back(alert)
    outcome = f"HTTP {run.http_status}" if run.http_status else run.error
    if run.status == ActionRun.Status.SUCCEEDED:
        messages.success(request, f"Action {name} ran: {outcome} in {run.latency_ms} ms.")
    else:
        messages.error(request, f"Action {name} failed: {run.error or outcome}")
    return _back(alert)
