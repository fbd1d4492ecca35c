"""Escalation policy lookup: the most specific enabled policy wins, else the built-in default."""
from __future__ import annotations

from datetime import datetime

from django.db.models import Q

from .matching import DEFAULT_ESCALATION, next_escalation_time
from .models import EscalationPolicy


def policy_for(*, tenant_id: int | None, plugin_id: int | None, severity: str) -> tuple[list[dict], int]:
    """(steps, repeat) for an alert: (tenant, plugin, severity) > (tenant, severity) > (severity) > default.

    A disabled policy is skipped (the next less specific one applies); to switch escalation off
    for a scope, enable a policy with no steps.
    """
    plugin_q = Q(plugin__isnull=True) | Q(plugin_id=plugin_id) if plugin_id else Q(plugin__isnull=True)
    rows = EscalationPolicy.objects.filter(
        plugin_q, Q(tenant__isnull=True) | Q(tenant_id=tenant_id), severity=severity, enabled=True
    ).only("tenant_id", "plugin_id", "steps", "repeat")
    best = max(rows, key=lambda p: (p.plugin_id is not None, p.tenant_id is not None), default=None)
    if best is None:
        steps, repeat = DEFAULT_ESCALATION.get(severity, ([], 0))
        return steps, repeat
    return best.steps, best.repeat


def first_escalation_at(*, tenant_id: int, plugin_id: int | None, severity: str, opened_at: datetime) -> datetime | None:
    """When an alert that (re)opened at ``opened_at`` first escalates, or None for never."""
    steps, repeat = policy_for(tenant_id=tenant_id, plugin_id=plugin_id, severity=severity)
    return next_escalation_time(steps, repeat, 0, opened_at)
