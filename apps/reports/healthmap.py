"""The health map: per tenant and plugin, what is wrong now and when we last heard from it.

A cell holds the worst active severity, active alerts counted by state, the last stored event,
the silence state and the absence state. Four queries whatever the number of plugins (no N+1):
plugins with their last event (a correlated top-1 subquery each, served by the EventRecord index
on (tenant, plugin, -ts)), one GROUP BY over active alerts, the active silences, and the slugs of
tenants that have plugin-less alerts.

"Last event" is the newest *stored* event: intake keeps lines at WARNING or above and lines a rule
matched, so a plugin that only logs INFO looks quiet here. A plugin is stale (absent) when that
event, or its registration if it never sent one, is older than ``HEALTH_MAP_STALE_SECONDS``.

Silence state: "silenced" when an active silence covers every alert of the plugin (no matcher but
the plugin, or none at all); "partial" when one covers some (it also names a rule, severity or
labels); "none" otherwise.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, OuterRef, Q, Subquery

from apps.alerts.models import ACTIVE_STATES, Alert, Silence
from apps.alerts.silences import active_silences
from apps.core import clock
from apps.core.vocabulary import severity_rank
from apps.ingest.models import EventRecord
from apps.tenants.models import Plugin, Tenant

SILENCED, PARTIAL, UNSILENCED = "silenced", "partial", "none"


@dataclass
class PluginHealth:
    tenant: str
    plugin: str | None                     # None: the tenant's alerts that name no plugin
    worst_severity: str | None = None
    by_state: dict[str, int] = field(default_factory=lambda: {s.value: 0 for s in ACTIVE_STATES})
    last_event_at: datetime | None = None
    stale: bool = False
    silence: str = UNSILENCED
    silenced_until: datetime | None = None

    @property
    def active(self) -> int:
        return sum(self.by_state.values())

    def as_dict(self) -> dict:
        return {"tenant": self.tenant, "plugin": self.plugin, "worst_severity": self.worst_severity,
                "active": self.active, "by_state": dict(self.by_state),
                "last_event_at": self.last_event_at.isoformat() if self.last_event_at else None,
                "stale": self.stale, "silence": self.silence,
                "silenced_until": self.silenced_until.isoformat() if self.silenced_until else None}


def silence_state(silences: list[Silence], *, tenant_id: int, plugin_slug: str | None) -> tuple[str, datetime | None]:
    """(state, until) of the silences covering a plugin; pure, over already loaded silences."""
    state, until = UNSILENCED, None
    for silence in silences:
        matchers = silence.matchers or {}
        if silence.tenant_id not in (None, tenant_id) or matchers.get("plugin", plugin_slug) != plugin_slug:
            continue
        whole = not (set(matchers) - {"plugin"})
        if whole and (state != SILENCED or silence.ends_at > until):
            state, until = SILENCED, silence.ends_at
        elif not whole and state == UNSILENCED:
            state, until = PARTIAL, silence.ends_at
        elif not whole and state == PARTIAL and silence.ends_at > until:
            until = silence.ends_at
    return state, until


def health_map(*, tenant_ids: Collection[int] | None, tenant_slug: str | None = None,
               now: datetime | None = None) -> list[PluginHealth]:
    """Cells for every plugin of the visible tenants (optionally one tenant by slug), ordered by
    tenant and plugin; a plugin-less cell per tenant only when it has such active alerts."""
    now = now or clock.now()
    stale_before = now - timedelta(seconds=settings.HEALTH_MAP_STALE_SECONDS)
    plugins = Plugin.objects.all()
    alerts = Alert.objects.filter(state__in=ACTIVE_STATES)
    if tenant_ids is not None:
        plugins = plugins.filter(tenant_id__in=list(tenant_ids))
        alerts = alerts.filter(tenant_id__in=list(tenant_ids))
    if tenant_slug:
        plugins = plugins.filter(tenant__slug=tenant_slug)
        alerts = alerts.filter(tenant__slug=tenant_slug)
    newest = (EventRecord.objects.filter(tenant_id=OuterRef("tenant_id"), plugin_id=OuterRef("pk"))
              .order_by("-ts").values("ts")[:1])
    rows = plugins.values("pk", "slug", "tenant_id", "tenant__slug", "created_at").annotate(
        last_event_at=Subquery(newest))
    cells: dict[tuple[int, int | None], PluginHealth] = {}
    for row in rows:
        seen = row["last_event_at"] or row["created_at"]
        cells[(row["tenant_id"], row["pk"])] = PluginHealth(
            tenant=row["tenant__slug"], plugin=row["slug"], last_event_at=row["last_event_at"],
            stale=seen < stale_before)
    counts: dict[tuple[int, int | None], list[tuple[str, str, int]]] = defaultdict(list)
    for row in alerts.values("tenant_id", "plugin_id", "state", "severity").annotate(n=Count("id")).order_by():
        counts[(row["tenant_id"], row["plugin_id"])].append((row["state"], row["severity"], row["n"]))
    orphans = {tenant_id for tenant_id, plugin_id in counts if plugin_id is None}
    if orphans:
        slugs = dict(Tenant.objects.filter(pk__in=orphans).values_list("pk", "slug"))
        for tenant_id in orphans:
            cells[(tenant_id, None)] = PluginHealth(tenant=slugs[tenant_id], plugin=None)
    for key, groups in counts.items():
        cell = cells.get(key)
        if cell is None:  # an alert of a plugin outside the filter cannot occur; be safe
            continue
        for state, severity, n in groups:
            cell.by_state[state] = cell.by_state.get(state, 0) + n
            if cell.worst_severity is None or severity_rank(severity) > severity_rank(cell.worst_severity):
                cell.worst_severity = severity
    silences = active_silences(at=now)
    if tenant_ids is not None:  # platform-wide silences (no tenant) cover every tenant too
        silences = silences.filter(Q(tenant_id__in=list(tenant_ids)) | Q(tenant__isnull=True))
    silences = list(silences)
    for (tenant_id, _), cell in cells.items():
        cell.silence, cell.silenced_until = silence_state(silences, tenant_id=tenant_id, plugin_slug=cell.plugin)
    return sorted(cells.values(), key=lambda c: (c.tenant, c.plugin is None, c.plugin or ""))
