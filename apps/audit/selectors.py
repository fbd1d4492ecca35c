"""Read side of the audit trail: filtered, tenant-scoped lists for the console and exports."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Collection

from django.db.models import Q, QuerySet

from .models import AuditEvent


@dataclass
class AuditFilters:
    """Every field optional (None/empty = any)."""

    actor: str | None = None        # actor label, case-insensitive substring ("alice", "token:ci", "system")
    action: str | None = None       # exact ("alert.acknowledged") or a prefix ending in "." ("alert.")
    target: str | None = None       # "alerts.alert:42", "alerts.alert" or a bare id "42"
    tenant: str | None = None       # slug
    since: datetime | None = None
    until: datetime | None = None


def audit_list(*, tenant_ids: Collection[int] | None, filters: AuditFilters) -> QuerySet[AuditEvent]:
    """Audit events newest first. ``tenant_ids`` None: everything (staff); else only events of
    those tenants (platform-wide events without a tenant are staff-only)."""
    qs = AuditEvent.objects.select_related("tenant").order_by("-at", "-id")
    if tenant_ids is not None:
        qs = qs.filter(tenant_id__in=list(tenant_ids))
    if filters.actor:
        qs = qs.filter(actor_label__icontains=filters.actor)
    if filters.action:
        action = filters.action.strip()
        qs = qs.filter(action__startswith=action) if action.endswith(".") else qs.filter(action=action)
    if filters.target:
        qs = qs.filter(_target_q(filters.target.strip()))
    if filters.tenant:
        qs = qs.filter(tenant__slug=filters.tenant)
    if filters.since:
        qs = qs.filter(at__gte=filters.since)
    if filters.until:
        qs = qs.filter(at__lt=filters.until)
    return qs


def _target_q(target: str) -> Q:
    if ":" in target:
        kind, _, target_id = target.partition(":")
        return Q(target_type=kind, target_id=target_id)
    if "." in target:
        return Q(target_type=target)
    return Q(target_id=target)


def audit_actions() -> list[str]:
    """Distinct action names (for the filter's suggestions); the action column is indexed."""
    return list(AuditEvent.objects.order_by("action").values_list("action", flat=True).distinct()[:200])
