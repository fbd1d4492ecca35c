"""Alerts raised and resolved by other systems (DESIGN 10): Alertmanager, Grafana, the event API.

Each source names its alerts with a key (Alertmanager's fingerprint, an event's dedup key); the
alert's fingerprint is ``fingerprint_for("<source>:<key>", {"tenant_id": tenant id})``, the same
one ``fire_alert`` computes, so lifecycle, silences, reopening and notifications are those of
every other alert. Runs in the caller's transaction (the detect batch); never commits.

Counting: ``count`` is the number of distinct occurrences, an occurrence being (key,
``started_at``). Alertmanager re-sends a firing alert every ``repeat_interval`` with the same
``startsAt``: such a repeat only moves ``last_seen`` and refreshes the annotations, so ``count``
does not grow with time. A new ``startsAt`` (the alert fired again in the source) counts one more.
"""
from __future__ import annotations

from datetime import datetime

from apps.core import clock
from apps.core.errors import Conflict, NotFound
from apps.tenants.models import Plugin, Tenant

from .firing import FireResult, fire_alert
from .matching import fingerprint_for
from .models import ACTIVE_STATES, Alert
from .services import alert_resolve

STARTED_AT = "startsAt"


def external_fingerprint(*, tenant_id: int, source: str, key: str) -> str:
    return fingerprint_for(f"{source}:{key}", {"tenant_id": tenant_id})


def fire_external(*, tenant: Tenant, plugin: Plugin | None, source: str, key: str, severity: str, title: str,
                  summary: str, labels: dict, annotations: dict, started_at: datetime | None, seen_at: datetime,
                  received_at: datetime, value: float | None = None) -> FireResult:
    """Create, reopen or absorb into the alert of (tenant, source, key); see the module docstring.

    ``started_at`` identifies the occurrence (None: every call is a new one); it is kept in the
    alert's annotations as ``startsAt``.
    """
    occurrence = started_at.isoformat() if started_at else None
    annotations = {**annotations, STARTED_AT: occurrence} if occurrence else dict(annotations)
    fingerprint = external_fingerprint(tenant_id=tenant.pk, source=source, key=key)
    active = (Alert.objects.select_for_update(of=("self",)).filter(fingerprint=fingerprint, state__in=ACTIVE_STATES)
              .first())
    if active is not None and occurrence is not None and active.annotations.get(STARTED_AT) == occurrence:
        # A repeat of the occurrence this alert already counts (Alertmanager's repeat_interval).
        Alert.objects.filter(pk=active.pk).update(
            last_seen=max(active.last_seen, seen_at), annotations=annotations, summary=summary or active.summary,
            value=value if value is not None else active.value, updated_at=clock.now())
        active.refresh_from_db()
        return FireResult(active, absorbed=True)
    result = fire_alert(
        tenant=tenant, plugin=plugin, rule_key=key, rule_version=0, category=source, severity=severity, title=title,
        summary=summary, recommended_action=_runbook(annotations), group_key={"tenant_id": tenant.pk},
        labels=labels, window_seconds=0, occurrences=1, first_seen=started_at or seen_at, last_seen=seen_at,
        trace_ids=[], samples=[], source_received_at=received_at, source=source, annotations=annotations,
        value=value)
    if not result.created:
        # Absorbed or reopened: fire_alert keeps the old annotations; the source's are current.
        Alert.objects.filter(pk=result.alert.pk).update(annotations=annotations, summary=summary or result.alert.summary,
                                                        value=value if value is not None else result.alert.value)
        result.alert.refresh_from_db()
    return result


def resolve_external(*, tenant_id: int, source: str, key: str, actor: str, note: str) -> Alert | None:
    """Resolve the active alert of (tenant, source, key) with ``note`` on its timeline, sending
    the usual alert.updated; None when there is none (never fired here, or already resolved)."""
    fingerprint = external_fingerprint(tenant_id=tenant_id, source=source, key=key)
    alert_id = (Alert.objects.filter(fingerprint=fingerprint, state__in=ACTIVE_STATES)
                .values_list("pk", flat=True).first())
    if alert_id is None:
        return None
    try:
        return alert_resolve(alert_id=alert_id, actor=actor, note=note)
    except (Conflict, NotFound):
        return None  # resolved or deleted since we looked: the outcome wanted


def _runbook(annotations: dict) -> str:
    url = annotations.get("runbook_url") or annotations.get("runbookURL")
    return f"Runbook: {url}" if isinstance(url, str) and url else ""
