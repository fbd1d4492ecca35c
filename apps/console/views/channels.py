"""Channels and routing policies: read-only lists per visible tenant, a channel test button for
operators (POST, CSRF), and a "which channels would this alert reach?" preview.

Auditors and tenant viewers see the pages but no Test button; the POST refuses them too (403).
Another tenant's channel or alert is 404, as everywhere in the console.
"""
from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from apps.alerts.payload import alert_payload
from apps.core import clock
from apps.delivery import channel_services, policies, selectors

from ..access import console_view, visible_alert


@console_view
def channel_list(request: HttpRequest) -> HttpResponse:
    viewer = request.viewer
    channels = list(selectors.channels(tenant_ids=viewer.tenant_ids)[:500])
    recent = selectors.recent_channel_deliveries([c.pk for c in channels])
    rows = [{"channel": c, "recent": recent.get(c.pk, []), "can_test": viewer.can_operate(c.tenant_id)}
            for c in channels]
    return render(request, "console/channels.html", {"rows": rows})


@require_POST
@console_view
def channel_test(request: HttpRequest, channel_id: int) -> HttpResponse:
    viewer = request.viewer
    channel = selectors.channels(tenant_ids=viewer.tenant_ids).filter(pk=channel_id).first()
    if channel is None:
        raise Http404(f"channel {channel_id} not found")
    if not viewer.can_operate(channel.tenant_id):
        raise PermissionDenied("your role may not send test notifications")
    r = channel_services.test_channel(channel=channel)
    said = f"{channel.kind}:{channel.name} answered {r.status_code or 'nothing'} in {r.latency_ms} ms"
    if r.ok:
        messages.success(request, f"Test sent: {said}. {r.response}".strip())
    else:
        messages.error(request, f"Test failed: {said}: {r.error}")
    return redirect("console:channels")


@console_view
def policy_list(request: HttpRequest) -> HttpResponse:
    """The ordered policies; ``?alert_id=`` previews where that alert would go."""
    viewer = request.viewer
    rows = list(selectors.policies(tenant_ids=viewer.tenant_ids)[:500])
    preview, alert, error = None, None, ""
    raw = request.GET.get("alert_id", "").strip()
    if raw:
        if not raw.isdigit():
            error = f"alert id must be a number, got {raw!r}"
        else:
            alert = visible_alert(request, int(raw))
            preview = policies.preview(tenant_id=alert.tenant_id, alert=alert_payload(alert), at=clock.now())
    return render(request, "console/policies.html", {"policies": rows, "preview": preview, "alert": alert,
                                                     "alert_id": raw, "error": error})
