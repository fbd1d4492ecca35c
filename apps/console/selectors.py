"""Console-only reads that the owning apps have no selector for yet (see the README part).

Each reads the other apps' models directly and never writes. When ``alerts``, ``ingest`` or
``delivery`` grow an equivalent selector, the view should call that one instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Collection

from django.contrib.auth import get_user_model
from django.db.models import Case, Count, IntegerField, Q, QuerySet, Value, When
from django.db.models.functions import TruncHour

from apps.alerts.models import ACTIVE_STATES, Alert, AlertState, Severity
from apps.core.vocabulary import SEVERITY_RANK
from apps.alerts.selectors import alert_list, alert_timeline, alerts_visible
from apps.delivery.selectors import deliveries_for_alert
from apps.ingest.models import EventRecord
from apps.tenants.models import Plugin, Tenant, TenantMembership

from .fastpath import events_of_rule

SORTS = {
    "newest": ("-created_at", "-id"),
    "oldest": ("created_at", "id"),
    "last_seen": ("-last_seen", "-id"),
    "severity": ("-severity_rank", "-created_at", "-id"),
    "count": ("-count", "-id"),
}
EVIDENCE_LIMIT = 50


def sorted_alerts(qs: QuerySet[Alert], sort: str) -> QuerySet[Alert]:
    """``qs`` in the console's ``sort`` order (an unknown sort means newest first)."""
    if sort == "severity":
        qs = qs.annotate(severity_rank=Case(*[When(severity=s, then=Value(r)) for s, r in SEVERITY_RANK.items()],
                                            default=Value(0), output_field=IntegerField()))
    return qs.order_by(*SORTS.get(sort, SORTS["newest"]))


# A text search reads every row's title and summary (no text index on alerts): past this many
# matches the list stops counting and shows "1000+" instead of scanning on.
SEARCH_COUNT_CAP = 1000


def state_counts(*, tenant_ids: Collection[int] | None, filters: Any,
                 cap: int | None = None) -> tuple[dict[str, int], bool]:
    """Counts per state for the list's tabs, under every filter but the state one, and whether
    they are capped (lower bounds). One query.

    Without ``cap``: ``GROUP BY state`` rather than one ``COUNT ... FILTER`` per state, so that
    unfiltered (or severity-filtered) PostgreSQL answers from the (state, severity) index alone,
    an index-only scan instead of reading every row (~9 vs ~40 ms at 100k alerts).
    With ``cap``: reads the states of at most ``cap + 1`` matching rows; when there are more the
    scan stops early and the counts are lower bounds (``capped``).
    """
    from dataclasses import replace

    qs = alert_list(tenant_ids=tenant_ids, filters=replace(filters, states=[])).order_by()
    counts = {s: 0 for s in AlertState.values}
    capped = False
    if cap is None:
        counts.update(qs.values("state").annotate(n=Count("*")).values_list("state", "n"))
    else:
        states = list(qs.values_list("state", flat=True)[:cap + 1])
        capped = len(states) > cap
        for state in states:
            counts[state] = counts.get(state, 0) + 1
    counts["all"] = sum(counts.values())
    counts["active"] = sum(counts[s] for s in ACTIVE_STATES)
    return counts, capped


def capped_count(qs: QuerySet, cap: int) -> tuple[int, bool]:
    """``min(qs.count(), cap + 1)`` without counting past it, and whether it went past ``cap``."""
    n = len(qs.order_by().values_list("pk", flat=True)[:cap + 1])
    return n, n > cap


FILTER_OPTIONS_LIMIT = 50


def slug_options(*, kind: str, tenant_ids: Collection[int] | None, q: str = "",
                 limit: int = FILTER_OPTIONS_LIMIT) -> list[str]:
    """Visible tenant (``kind="tenant"``) or plugin slugs containing ``q``, sorted, at most
    ``limit``: a tenant may have a thousand plugins, the filter input offers a few at a time."""
    if kind == "tenant":
        rows = Tenant.objects.filter(pk__in=list(tenant_ids)) if tenant_ids is not None else Tenant.objects.all()
    else:
        rows = Plugin.objects.filter(tenant_id__in=list(tenant_ids)) if tenant_ids is not None else Plugin.objects.all()
    if q:
        rows = rows.filter(slug__icontains=q)
    return list(rows.order_by("slug").values_list("slug", flat=True).distinct()[:limit])


def filter_choices(*, tenant_ids: Collection[int] | None) -> dict[str, list]:
    """Options of the list's filters: visible tenants and their plugins (the first
    FILTER_OPTIONS_LIMIT; the inputs look up more as one types), rule keys."""
    return {
        "tenants": slug_options(kind="tenant", tenant_ids=tenant_ids),
        "plugins": slug_options(kind="plugin", tenant_ids=tenant_ids),
        # Rule keys from the small rules table rather than a DISTINCT over every alert row.
        "rules": _rule_keys(),
        "categories": category_options(tenant_ids=tenant_ids),
    }


CATEGORY_LIMIT = 50


def category_options(*, tenant_ids: Collection[int] | None, limit: int = CATEGORY_LIMIT) -> list[str]:
    """Categories to offer in the list's filter: those of the rules (a small table) and of the
    visible active alerts (other sources bring their own), sorted, at most ``limit``. Resolved
    alerts are not read: a DISTINCT over the whole history would scan every row."""
    from apps.rules.models import LogRule

    found = set(LogRule.objects.order_by().values_list("category", flat=True).distinct()[:limit])
    found.update(name for name, _n in active_by_category(tenant_ids=tenant_ids, limit=limit))
    found.discard("")
    return sorted(found)[:limit]


def active_by_category(*, tenant_ids: Collection[int] | None, limit: int = 12) -> list[tuple[str, int]]:
    """Active alerts per category, most first (ties by name), at most ``limit`` rows. One query."""
    rows = (alerts_visible(tenant_ids=tenant_ids).filter(state__in=ACTIVE_STATES).order_by()
            .values("category").annotate(n=Count("id")).order_by("-n", "category")[:limit])
    return [(row["category"], row["n"]) for row in rows]


def rule_counts() -> dict[str, int]:
    """Rules platform-wide: enabled log rules (every log kind), enabled metric rules, disabled.
    Per-tenant overrides may switch a rule off for one tenant; they are not subtracted here."""
    from apps.rules.metric_spec import METRIC_KINDS
    from apps.rules.models import LogRule

    metric = Q(kind__in=METRIC_KINDS)
    return LogRule.objects.aggregate(
        log=Count("id", filter=Q(enabled=True) & ~metric),
        metric=Count("id", filter=Q(enabled=True) & metric),
        disabled=Count("id", filter=Q(enabled=False)),
    )


def _rule_keys() -> list[str]:
    from apps.rules.models import LogRule  # read-only; the console links rules, never edits them

    return list(LogRule.objects.order_by("key").values_list("key", flat=True)[:500])


def assignable_users(*, tenant_id: int) -> list:
    """Active users an alert of ``tenant_id`` may be assigned to: staff and the tenant's members."""
    members = TenantMembership.objects.filter(tenant_id=tenant_id).values("user_id")
    return list(get_user_model().objects.filter(is_active=True)
                .filter(Q(is_staff=True) | Q(pk__in=members)).order_by("username")[:200])


def assignable_usernames(*, tenant_ids: Collection[int] | None, limit: int = 200) -> list[str]:
    """Usernames the list's bulk assign offers: active staff and members of the visible tenants.
    The service still checks each alert's own tenant (a member of one tenant is skipped for another's)."""
    users = get_user_model().objects.filter(is_active=True)
    if tenant_ids is not None:
        members = TenantMembership.objects.filter(tenant_id__in=list(tenant_ids)).values("user_id")
        users = users.filter(Q(is_staff=True) | Q(pk__in=members))
    return list(users.order_by("username").values_list("username", flat=True)[:limit])


def evidence_lines(*, alert: Alert, limit: int = EVIDENCE_LIMIT) -> list[EventRecord]:
    """Stored (already masked) events behind an alert: its rule's matches in its group between
    first and last seen, else events with one of its trace ids. Newest first, capped."""
    qs = EventRecord.objects.filter(tenant_id=alert.tenant_id, ts__gte=alert.first_seen, ts__lte=alert.last_seen)
    if alert.plugin_id:
        qs = qs.filter(plugin_id=alert.plugin_id)
    qs = qs.order_by("-ts", "-id")
    if not alert.rule_key:
        lines = list(qs[:limit])
    else:
        lines = events_of_rule(qs, rule_key=alert.rule_key, limit=limit)
    if not lines and alert.trace_ids:
        lines = list(EventRecord.objects.filter(tenant_id=alert.tenant_id, trace_id__in=alert.trace_ids[:50])
                     .order_by("-ts", "-id")[:limit])
    return lines


@dataclass
class TimelineItem:
    """One line of the detail page's merged history."""

    at: datetime
    kind: str
    label: str
    actor: str
    message: str
    ok: bool | None = None


def merged_timeline(*, alert: Alert, deliveries: list | None = None) -> list[TimelineItem]:
    """Timeline entries and delivery attempts of an alert, oldest first.

    The delivery app records attempts in its own tables rather than the alert timeline, so the
    console interleaves them here to show one history.
    """
    items = [TimelineItem(at=e.at, kind=e.kind, label=e.get_kind_display(), actor=e.actor_label or "system",
                          message=e.message) for e in alert_timeline(alert=alert)]
    for delivery in deliveries if deliveries is not None else deliveries_for_alert(alert.pk):
        target = delivery.endpoint.url if delivery.endpoint_id else ", ".join(delivery.recipients or [])
        for attempt in delivery.attempt_log.all():
            outcome = f"HTTP {attempt.status_code}" if attempt.status_code else ("sent" if attempt.success else "no answer")
            detail = f"{delivery.event_type} → {target}: {outcome}, {attempt.latency_ms} ms"
            if attempt.error:
                detail += f" ({attempt.error[:200]})"
            items.append(TimelineItem(at=attempt.started_at, kind="delivery",
                                      label=f"{attempt.get_channel_display()} attempt {attempt.number}",
                                      actor="delivery", message=detail, ok=attempt.success))
    items.sort(key=lambda i: i.at)
    return items


def active_by_severity(*, tenant_ids: Collection[int] | None) -> dict[str, int]:
    """Alerts active right now (not resolved), by severity. One query."""
    qs = alerts_visible(tenant_ids=tenant_ids).filter(state__in=ACTIVE_STATES)
    counts = qs.aggregate(**{s: Count("id", filter=Q(severity=s)) for s in Severity.values})
    return counts


def hourly_counts(*, tenant_ids: Collection[int] | None, now: datetime, hours: int = 24) -> list[dict]:
    """Alerts created per hour over the last ``hours`` (oldest first), split by severity.

    Every hour is present (zeros included) so the chart has a stable x axis.
    """
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    start = end - timedelta(hours=hours)
    rows = (alerts_visible(tenant_ids=tenant_ids).filter(created_at__gte=start, created_at__lt=end)
            .annotate(hour=TruncHour("created_at")).values("hour", "severity").annotate(n=Count("id")))
    buckets = {start + timedelta(hours=i): {s: 0 for s in Severity.values} for i in range(hours)}
    for row in rows:
        bucket = buckets.get(row["hour"])
        if bucket is not None:
            bucket[row["severity"]] = row["n"]
    return [{"hour": hour, "counts": counts, "total": sum(counts.values())} for hour, counts in buckets.items()]
