"""Who is looking: the signed-in user's role, tenant scope and what they may do in the console.

Built once per request (``request.viewer``) from ``apps.alerts.roles`` so the console and the API
apply the same rules: staff see every tenant, tenant members only their own tenants, and only
operators (staff group or operator/admin membership) change anything.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import wraps
from typing import Any, Callable

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from apps.alerts import roles
from apps.alerts.models import Alert
from apps.alerts.selectors import alert_get
from apps.core.errors import NotFound
from apps.tenants.models import Tenant, TenantMembership

STAFF_ROLES = (("operators", "operator"), ("governance", "governance"), ("auditors", "auditor"))


@dataclass
class Viewer:
    """The signed-in user as the console sees them."""

    user: Any
    tenant_ids: list[int] | None          # None: every tenant (staff)
    role: str                             # shown in the header
    tenant_slugs: list[str] = field(default_factory=list)
    _operable: dict = field(default_factory=dict, repr=False)

    @property
    def is_staff(self) -> bool:
        return bool(self.user.is_staff)

    @property
    def scope_label(self) -> str:
        if self.tenant_ids is None:
            return "all tenants"
        return ", ".join(self.tenant_slugs) if self.tenant_slugs else "no tenant"

    def can_operate(self, tenant_id: int | None = None) -> bool:
        """May this user change alerts (of ``tenant_id``)? Cached for the request."""
        if tenant_id not in self._operable:
            self._operable[tenant_id] = roles.can_operate(self.user, tenant_id)
        return self._operable[tenant_id]

    def operable_tenant_ids(self) -> list[int] | None:
        """Tenants whose alerts this user may change: None for every tenant, else a (maybe empty) list."""
        if self.is_staff:
            return None if self.can_operate() else []
        return list(TenantMembership.objects.filter(user=self.user, role__in=roles.WORKING_ROLES)
                    .values_list("tenant_id", flat=True))

    @property
    def can_silence(self) -> bool:
        if self.is_staff:
            return self.user.has_perm("alerts.add_silence")
        return self.can_operate()


def _role_label(user: Any) -> str:
    if user.is_superuser:
        return "superuser"
    if user.is_staff:
        names = set(user.groups.values_list("name", flat=True))
        found = [label for group, label in STAFF_ROLES if group in names]
        return " + ".join(found) if found else "staff (no group)"
    roles_held = set(TenantMembership.objects.filter(user=user).values_list("role", flat=True))
    for role in (TenantMembership.Role.ADMIN, TenantMembership.Role.OPERATOR, TenantMembership.Role.VIEWER):
        if role in roles_held:
            return f"tenant {role}"
    return "no access"


def viewer_for(user: Any) -> Viewer:
    tenant_ids = roles.visible_tenant_ids(user)
    slugs = [] if tenant_ids is None else list(
        Tenant.objects.filter(pk__in=tenant_ids).order_by("slug").values_list("slug", flat=True))
    return Viewer(user=user, tenant_ids=tenant_ids, role=_role_label(user), tenant_slugs=slugs)


def console_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Sign-in required; sets ``request.viewer``; a user with no tenant and no staff role gets the
    "no access yet" page (403) naming what to ask for."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        request.viewer = viewer_for(request.user)
        if request.viewer.tenant_ids == []:
            # Signed in but given nothing to see: say what is missing instead of empty pages.
            return render(request, "console/no_access.html", status=403)
        return view(request, *args, **kwargs)

    return wrapper


def visible_alert(request: HttpRequest, alert_id: int) -> Alert:
    """The alert if this viewer may see it; 404 otherwise (other tenants' alerts do not exist)."""
    try:
        return alert_get(alert_id=alert_id, tenant_ids=request.viewer.tenant_ids)
    except NotFound:
        raise Http404(f"alert {alert_id} not found") from None
