"""Escalation policy lookup: the most specific enabled policy wins, else the built-in default."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from django.db.models import Q

from apps.delivery.models import NotificationChannel
from apps.tenants.paging import rotation_names

from .matching import CHANNELS, DEFAULT_ESCALATION, next_escalation_time, validate_steps
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


def first_escalations(keys: Iterable[tuple[int, int | None, str]], *, opened_at: datetime) -> dict[tuple, datetime | None]:
    """``first_escalation_at`` for many (tenant_id, plugin_id, severity) keys from one read: the
    enabled policies of those tenants and severities, chosen in memory as ``policy_for`` does."""
    keys = set(keys)
    if not keys:
        return {}
    rows = list(EscalationPolicy.objects.filter(
        Q(tenant__isnull=True) | Q(tenant_id__in={t for t, _, _ in keys}),
        severity__in={s for _, _, s in keys}, enabled=True).only("tenant_id", "plugin_id", "severity", "steps", "repeat"))
    out = {}
    for tenant_id, plugin_id, severity in keys:
        fits = [p for p in rows if p.severity == severity and p.tenant_id in (None, tenant_id)
                and p.plugin_id in (None, plugin_id)]
        best = max(fits, key=lambda p: (p.plugin_id is not None, p.tenant_id is not None), default=None)
        steps, repeat = (best.steps, best.repeat) if best else DEFAULT_ESCALATION.get(severity, ([], 0))
        out[(tenant_id, plugin_id, severity)] = next_escalation_time(steps, repeat, 0, opened_at)
    return out


def validate_policy_steps(*, tenant_id: int | None, steps: Any, repeat: int) -> list[dict]:
    """``validate_steps`` plus the names: every channel is built in (webhook, email, sms) or one of
    the tenant's notification channels, every ``oncall`` one of its rotations. Raises ValueError
    naming the step and the unknown name; a policy without a tenant may use built-in channels only."""
    raw = steps if isinstance(steps, list) else []
    named = {c for s in raw if isinstance(s, dict) and isinstance(s.get("channels"), list)
             for c in s["channels"] if isinstance(c, str) and c not in CHANNELS}
    channels = set(NotificationChannel.objects.filter(tenant_id=tenant_id, name__in=named)
                   .values_list("name", flat=True)) if named and tenant_id else set()
    rotations = rotation_names(tenant_id) if tenant_id else set()
    scope = "this tenant" if tenant_id else "a policy without a tenant"

    def check_names(i: int, step: dict) -> None:
        for name in step["channels"]:
            if name not in CHANNELS and name not in channels:
                raise ValueError(f"step {i}: channels: unknown channel {name!r} for {scope} "
                                 f"(built in: {', '.join(CHANNELS)})")
        if step.get("oncall") and step["oncall"] not in rotations:
            raise ValueError(f"step {i}: oncall: unknown rotation {step['oncall']!r} for {scope}")

    return validate_steps(steps, repeat, check_names)
