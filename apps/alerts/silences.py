"""Silences: create, change, expire, preview, and which active silence (if any) covers an alert.

A silence is active while ``starts_at <= now < ends_at`` and it was not expired early, so it ends
by itself with no sweeper. Alerts created under it are SUPPRESSED with ``suppressed_until`` set to
its end; the unsuppress sweeper then reopens them (Alertmanager semantics: notifications resume
once the silence is over). Expiring a silence early unsuppresses its alerts at once.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from django.db import transaction
from django.db.models import Q, QuerySet

from apps.audit.services import record
from apps.core import clock
from apps.core.errors import ApplicationError, Conflict

from .history import actor_label
from .matching import matchers_match, validate_matchers
from .models import ACTIVE_STATES, Alert, AlertState, Silence

MAX_SILENCE_DAYS = 366


def active_silences(*, tenant_id: int | None = None, at: datetime | None = None) -> QuerySet[Silence]:
    """Silences in force at ``at`` (default now) for a tenant (its own plus the all-tenant ones)."""
    at = at or clock.now()
    qs = Silence.objects.filter(starts_at__lte=at, ends_at__gt=at, expired_at__isnull=True)
    if tenant_id is not None:
        qs = qs.filter(Q(tenant_id=tenant_id) | Q(tenant__isnull=True))
    return qs


def silence_covering(silences: Iterable[Silence], *, tenant_id: int, plugin_slug: str | None, rule_key: str,
                     severity: str, labels: dict) -> Silence | None:
    """The silence (longest-lasting first) whose tenant and matchers cover these alert attributes."""
    for silence in sorted(silences, key=lambda s: s.ends_at, reverse=True):
        if silence.tenant_id not in (None, tenant_id):
            continue
        if matchers_match(silence.matchers, plugin_slug=plugin_slug, rule_key=rule_key, severity=severity,
                          labels=labels):
            return silence
    return None


def silence_for_alert(alert: Alert, silences: Iterable[Silence]) -> Silence | None:
    return silence_covering(silences, tenant_id=alert.tenant_id, plugin_slug=alert.plugin.slug if alert.plugin else None,
                            rule_key=alert.rule_key, severity=alert.severity, labels=alert.labels or {})


def silence_preview(*, tenant_id: int | None, matchers: dict, alerts: QuerySet[Alert] | None = None,
                    limit: int = 100) -> list[Alert]:
    """Active alerts a draft silence would match (for the UI: "this silences 12 alerts")."""
    matchers = validate_matchers(matchers)
    qs = (alerts if alerts is not None else Alert.objects.all()).filter(state__in=ACTIVE_STATES)
    if tenant_id is not None:
        qs = qs.filter(tenant_id=tenant_id)
    if "rule" in matchers:
        qs = qs.filter(rule_key=matchers["rule"])
    if "severity" in matchers:
        qs = qs.filter(severity=matchers["severity"])
    if "plugin" in matchers:
        qs = qs.filter(plugin__slug=matchers["plugin"])
    if matchers.get("labels"):
        qs = qs.filter(labels__contains=matchers["labels"])
    return list(qs.select_related("tenant", "plugin").order_by("-created_at")[:limit])


def _validate_window(starts_at: datetime, ends_at: datetime) -> None:
    if ends_at <= starts_at:
        raise ApplicationError("ends_at must be after starts_at", details={"ends_at": ["must be after starts_at"]})
    if (ends_at - starts_at).days > MAX_SILENCE_DAYS:
        raise ApplicationError(f"a silence may last at most {MAX_SILENCE_DAYS} days",
                               details={"ends_at": [f"at most {MAX_SILENCE_DAYS} days after starts_at"]})


def silence_create(*, actor: Any, tenant_id: int | None, matchers: dict, ends_at: datetime, reason: str,
                   starts_at: datetime | None = None) -> Silence:
    """Create and audit a silence. It affects alerts created or reopened from now on; alerts
    already active keep their state but do not escalate while it covers them.

    Raises ApplicationError (400) naming the field on bad matchers, an empty reason or a bad window.
    """
    try:
        matchers = validate_matchers(matchers)
    except ValueError as exc:
        raise ApplicationError(str(exc), details={"matchers": [str(exc)]}) from exc
    if not reason or not reason.strip():
        raise ApplicationError("a reason is required", details={"reason": ["required"]})
    starts_at = starts_at or clock.now()
    _validate_window(starts_at, ends_at)
    with transaction.atomic():
        silence = Silence.objects.create(tenant_id=tenant_id, matchers=matchers, starts_at=starts_at, ends_at=ends_at,
                                         reason=reason.strip()[:500], created_by=actor_label(actor))
        record("silence.created", actor=actor, target=silence, tenant=tenant_id,
               data={"matchers": matchers, "starts_at": starts_at.isoformat(), "ends_at": ends_at.isoformat(),
                     "reason": silence.reason})
    return silence


def silence_update(*, silence: Silence, actor: Any, ends_at: datetime, reason: str) -> Silence:
    """Change a silence's end or reason; alerts it suppresses follow the new end."""
    _validate_window(silence.starts_at, ends_at)
    with transaction.atomic():
        Silence.objects.filter(pk=silence.pk).update(ends_at=ends_at, reason=reason[:500])
        Alert.objects.filter(silence=silence, state=AlertState.SUPPRESSED).update(suppressed_until=ends_at)
        record("silence.updated", actor=actor, target=silence, tenant=silence.tenant_id,
               data={"ends_at": ends_at.isoformat(), "reason": reason[:500]})
    silence.refresh_from_db()
    return silence


def silence_expire(*, silence_id: int, actor: Any) -> Silence:
    """End a silence now (API DELETE). Alerts it suppressed are unsuppressed in the same
    transaction and notify as if newly triggered. Conflict if it already ended."""
    from .services import alert_unsuppress  # services import this module

    now = clock.now()
    with transaction.atomic():
        changed = Silence.objects.filter(pk=silence_id, expired_at__isnull=True, ends_at__gt=now).update(expired_at=now)
        silence = Silence.objects.get(pk=silence_id)
        if not changed:
            raise Conflict(f"silence {silence_id} has already ended", details={"ends_at": silence.ends_at.isoformat()})
        record("silence.expired", actor=actor, target=silence, tenant=silence.tenant_id)
        for alert_id in Alert.objects.filter(silence=silence, state=AlertState.SUPPRESSED).values_list("pk", flat=True):
            try:
                alert_unsuppress(alert_id=alert_id, actor=actor, note=f"silence {silence_id} expired")
            except Conflict:
                pass  # resolved or unsuppressed meanwhile: nothing left to do for it
    return silence
