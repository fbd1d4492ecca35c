"""Staff roles for the console and admin (groups created in tenants 0002, permissions granted
in alerts 0003): operators work alerts, governance edits rules, auditors read everything.

Non-staff users act through their TenantMembership: viewers read, operators/admins work alerts
of their own tenants only.
"""
from __future__ import annotations

from typing import Any

from apps.tenants.models import TenantMembership

WORKING_ROLES = (TenantMembership.Role.OPERATOR, TenantMembership.Role.ADMIN)


def can_operate(user: Any, tenant_id: int | None = None) -> bool:
    """May ``user`` acknowledge/resolve/assign/suppress alerts (of ``tenant_id``, when given)?

    Staff need the ``alerts.change_alert`` permission (operators group, or superuser); auditors
    and governance do not have it. Other users need an operator/admin membership of the tenant.
    """
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return False
    if user.is_staff:
        return user.has_perm("alerts.change_alert")
    memberships = TenantMembership.objects.filter(user=user, role__in=WORKING_ROLES)
    if tenant_id is not None:
        memberships = memberships.filter(tenant_id=tenant_id)
    return memberships.exists()


def visible_tenant_ids(user: Any) -> list[int] | None:
    """Tenant ids whose alerts ``user`` may see: None means every tenant (staff), else the
    tenants of their memberships (possibly empty)."""
    if not getattr(user, "is_authenticated", False):
        return []
    if user.is_staff:
        return None
    return list(TenantMembership.objects.filter(user=user).values_list("tenant_id", flat=True))
