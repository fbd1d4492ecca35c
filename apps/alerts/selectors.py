"""Read side of alerts: filtered lists, one alert, its timeline, statistics. No writes here.

Every selector takes ``tenant_ids``: None for "every tenant" (platform tokens, staff), else the
tenants the caller may see (``[token.tenant_id]`` or ``roles.visible_tenant_ids(user)``).
Rows outside those tenants do not exist for the caller (NotFound, never 403).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Collection, Iterable

from django.contrib.auth import get_user_model
from django.db.models import Avg, Count, Exists, F, OuterRef, Q, QuerySet

from apps.core import clock
from apps.core.errors import ApplicationError, NotFound
from apps.delivery.selectors import delivery_statistics

from .models import Alert, AlertState, Severity, Silence, TimelineEntry

ORDERINGS = ("created_at", "last_seen", "updated_at", "count")


@dataclass
class AlertFilters:
    """What the list, ack-all and console filter on; every field optional (None/empty = any)."""

    states: list[str] = field(default_factory=list)
    severities: list[str] = field(default_factory=list)
    tenant: str | None = None          # slug
    plugin: str | None = None          # slug
    rule: str | None = None            # rule key
    assignee: str | None = None        # username, or "none" for unassigned
    since: datetime | None = None      # created_at >= since
    until: datetime | None = None      # created_at < until
    q: str | None = None               # search in title and summary
    category: str | None = None        # the rule's category (error, security, metrics, ...)


def alerts_visible(*, tenant_ids: Collection[int] | None) -> QuerySet[Alert]:
    qs = Alert.objects.select_related("tenant", "plugin", "assignee")
    return qs if tenant_ids is None else qs.filter(tenant_id__in=list(tenant_ids))


def alert_list(*, tenant_ids: Collection[int] | None, filters: AlertFilters) -> QuerySet[Alert]:
    """Visible alerts matching ``filters`` (unordered: pagination orders)."""
    qs = alerts_visible(tenant_ids=tenant_ids)
    if filters.states:
        qs = qs.filter(state__in=filters.states)
    if filters.severities:
        qs = qs.filter(severity__in=filters.severities)
    if filters.tenant:
        qs = qs.filter(tenant__slug=filters.tenant)
    if filters.plugin:
        qs = qs.filter(plugin__slug=filters.plugin)
    if filters.rule:
        qs = qs.filter(rule_key=filters.rule)
    if filters.category:
        qs = qs.filter(category=filters.category)
    if filters.assignee:
        qs = (qs.filter(assignee__isnull=True) if filters.assignee == "none"
              else qs.filter(assignee__username=filters.assignee))
    if filters.since:
        qs = qs.filter(created_at__gte=filters.since)
    if filters.until:
        qs = qs.filter(created_at__lt=filters.until)
    if filters.q:
        # On PostgreSQL the trigram indexes of migration 0004 serve these UPPER(..) LIKE scans.
        qs = qs.filter(Q(title__icontains=filters.q) | Q(summary__icontains=filters.q))
    return qs


def alert_get(*, alert_id: int, tenant_ids: Collection[int] | None) -> Alert:
    """One visible alert or NotFound (also for other tenants' alerts)."""
    alert = alerts_visible(tenant_ids=tenant_ids).filter(pk=alert_id).first()
    if alert is None:
        raise NotFound(f"alert {alert_id} not found")
    return alert


def alert_timeline(*, alert: Alert) -> QuerySet[TimelineEntry]:
    return TimelineEntry.objects.filter(alert=alert).select_related("actor_user").order_by("at", "id")


def user_for_assignment(username: str):
    """The active user called ``username``; ApplicationError (400) naming ``assignee`` otherwise."""
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise ApplicationError(f"no active user {username!r}", details={"assignee": [f"no active user {username!r}"]})
    return user


def silences_visible(*, tenant_ids: Collection[int] | None) -> QuerySet[Silence]:
    """Silences a caller may see: their tenants' and the platform-wide ones (tenant NULL)."""
    qs = Silence.objects.select_related("tenant")
    return qs if tenant_ids is None else qs.filter(Q(tenant_id__in=list(tenant_ids)) | Q(tenant__isnull=True))


def silence_list(*, tenant_ids: Collection[int] | None, status: str | None = None) -> QuerySet[Silence]:
    """status: "active", "pending" (starts later) or "expired" (ended or expired early)."""
    now = clock.now()
    qs = silences_visible(tenant_ids=tenant_ids)
    if status == "active":
        qs = qs.filter(starts_at__lte=now, ends_at__gt=now, expired_at__isnull=True)
    elif status == "pending":
        qs = qs.filter(starts_at__gt=now, expired_at__isnull=True)
    elif status == "expired":
        qs = qs.filter(Q(ends_at__lte=now) | Q(expired_at__isnull=False))
    return qs


def silence_get(*, silence_id: int, tenant_ids: Collection[int] | None, writable: bool = False) -> Silence:
    """One visible silence or NotFound. ``writable``: tenant callers may not change the
    platform-wide silences they can see."""
    qs = silences_visible(tenant_ids=tenant_ids)
    if writable and tenant_ids is not None:
        qs = qs.filter(tenant_id__in=list(tenant_ids))
    silence = qs.filter(pk=silence_id).first()
    if silence is None:
        raise NotFound(f"silence {silence_id} not found")
    return silence


def _seconds(value: timedelta | None) -> float | None:
    return round(value.total_seconds(), 1) if value is not None else None


def alert_statistics(*, tenant_ids: Collection[int] | None, hours: int, now: datetime | None = None) -> dict:
    """Figures over alerts created in the last ``hours``.

    ack_rate: acknowledged / alerts that notified someone (created minus still SUPPRESSED);
    MTTA / MTTR: mean seconds from creation to acknowledgement / resolution (of those that were).
    ``delivery``: webhook delivery figures over the same window (apps.delivery.selectors).
    """
    now = now or clock.now()
    since = now - timedelta(hours=hours)
    qs = alerts_visible(tenant_ids=tenant_ids).filter(created_at__gte=since, created_at__lt=now)
    aggregates = {f"state_{s}": Count("id", filter=Q(state=s)) for s in AlertState.values}
    aggregates.update({f"severity_{s}": Count("id", filter=Q(severity=s)) for s in Severity.values})
    figures = qs.aggregate(
        total=Count("id"), acknowledged=Count("id", filter=Q(acknowledged_at__isnull=False)),
        escalated=Count("id", filter=Q(escalation_level__gt=0)),
        mtta=Avg(F("acknowledged_at") - F("created_at"), filter=Q(acknowledged_at__isnull=False)),
        mttr=Avg(F("resolved_at") - F("created_at"), filter=Q(resolved_at__isnull=False)),
        **aggregates,
    )
    notified = figures["total"] - figures[f"state_{AlertState.SUPPRESSED}"]
    top_plugins = (qs.exclude(plugin__isnull=True).values("tenant__slug", "plugin__slug")
                   .annotate(n=Count("id")).order_by("-n", "tenant__slug", "plugin__slug")[:10])
    top_rules = qs.exclude(rule_key="").values("rule_key").annotate(n=Count("id")).order_by("-n", "rule_key")[:10]
    return {
        "hours": hours,
        "since": since.isoformat(),
        "until": now.isoformat(),
        "alerts": {
            "total": figures["total"],
            "by_state": {s: figures[f"state_{s}"] for s in AlertState.values},
            "by_severity": {s: figures[f"severity_{s}"] for s in Severity.values},
            "acknowledged": figures["acknowledged"],
            "escalated": figures["escalated"],
        },
        "ack_rate": round(figures["acknowledged"] / notified, 4) if notified > 0 else None,
        "mtta_seconds": _seconds(figures["mtta"]),
        "mttr_seconds": _seconds(figures["mttr"]),
        "top_plugins": [{"tenant": r["tenant__slug"], "plugin": r["plugin__slug"], "count": r["n"]} for r in top_plugins],
        "top_rules": [{"rule": r["rule_key"], "count": r["n"]} for r in top_rules],
        # alerts uses delivery (DESIGN 1): the same figures the console dashboard shows.
        "delivery": delivery_statistics(tenant_ids=None if tenant_ids is None else list(tenant_ids), since=since),
    }


def tenants_with_alerts_since(tenant_ids: Iterable[int], since: datetime) -> set[int]:
    """Of ``tenant_ids``, those with an alert created since ``since``: one query, one probe of
    alert_tenant_created per tenant (the actions' sweeps skip the rest instead of querying each of
    their bridges and actions every 15 s)."""
    from apps.tenants.models import Tenant

    ids = list(tenant_ids)
    if not ids:
        return set()
    recent = Alert.objects.filter(tenant_id=OuterRef("pk"), created_at__gte=since)
    return set(Tenant.objects.filter(pk__in=ids).filter(Exists(recent)).values_list("pk", flat=True))
