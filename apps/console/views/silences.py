"""Silences: list (active, pending, expired), create with a preview of the matching active
alerts before saving, and expire early."""
from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from apps.alerts.selectors import alerts_visible, silence_get, silence_list
from apps.alerts.silences import silence_create, silence_expire, silence_preview
from apps.core import clock
from apps.core.errors import ApplicationError, NotFound
from apps.tenants.models import Tenant

from ..access import console_view
from ..forms import SilenceForm

ALL_TENANTS = "*"
STATUSES = ("active", "pending", "expired")


def _tenant_choices(viewer) -> list[tuple[str, str]]:
    if viewer.tenant_ids is None:
        return [(ALL_TENANTS, "every tenant"), *((s, s) for s in Tenant.objects.order_by("slug")
                                                   .values_list("slug", flat=True))]
    operable = set(viewer.operable_tenant_ids() or [])
    return [(s, s) for s in Tenant.objects.filter(pk__in=operable).order_by("slug").values_list("slug", flat=True)]


@console_view
def silence_page(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status") if request.GET.get("status") in STATUSES else "active"
    silences = list(silence_list(tenant_ids=request.viewer.tenant_ids, status=status)[:200])
    return render(request, "console/silences.html", {"silences": silences, "status": status, "statuses": STATUSES,
                                                     "now": clock.now(), "can_silence": request.viewer.can_silence})


@require_http_methods(["GET", "POST"])
@console_view
def silence_new(request: HttpRequest) -> HttpResponse:
    """GET: the form (prefilled from the query, e.g. from an alert). POST with ``preview``: the
    matching active alerts, nothing saved. POST with ``create``: save."""
    viewer = request.viewer
    if not viewer.can_silence:
        raise PermissionDenied("your role may not create silences")
    choices = _tenant_choices(viewer)
    if request.method == "GET":
        form = SilenceForm(initial=request.GET.dict(), tenant_choices=choices)
        return render(request, "console/silence_new.html", {"form": form})
    form = SilenceForm(request.POST, tenant_choices=choices)
    preview = None
    if form.is_valid():
        slug = form.cleaned_data["tenant"]
        tenant_id = None if slug in ("", ALL_TENANTS) else Tenant.objects.get(slug=slug).pk
        if tenant_id is None and viewer.tenant_ids is not None:
            raise PermissionDenied("only staff may silence every tenant")
        try:
            if "create" in request.POST:
                silence = silence_create(actor=request.user, tenant_id=tenant_id, matchers=form.matchers(),
                                         ends_at=clock.now() + form.cleaned_data["duration"],
                                         reason=form.cleaned_data["reason"])
                messages.success(request, f"Silence #{silence.pk} active until {silence.ends_at:%Y-%m-%d %H:%M} UTC: "
                                          "matching new alerts are suppressed and notify nobody.")
                return redirect("console:silences")
            preview = silence_preview(tenant_id=tenant_id, matchers=form.matchers(),
                                      alerts=alerts_visible(tenant_ids=viewer.tenant_ids))
        except (ApplicationError, ValueError) as exc:
            form.add_error(None, getattr(exc, "message", str(exc)))
    return render(request, "console/silence_new.html", {"form": form, "preview": preview})


@require_POST
@console_view
def silence_end(request: HttpRequest, silence_id: int) -> HttpResponse:
    viewer = request.viewer
    if not viewer.can_silence:
        raise PermissionDenied("your role may not expire silences")
    try:
        silence = silence_get(silence_id=silence_id, tenant_ids=viewer.operable_tenant_ids(), writable=True)
    except NotFound:
        raise Http404(f"silence {silence_id} not found") from None
    try:
        silence_expire(silence_id=silence.pk, actor=request.user)
        messages.success(request, f"Silence #{silence.pk} expired; alerts it suppressed are back in play.")
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("console:silences")
