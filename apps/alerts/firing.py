"""``fire_alert``: what the detection engine calls when a group crosses its threshold.

One fingerprint has at most one active alert (partial unique index). Firing again absorbs into
it; firing shortly after it was resolved reopens it; otherwise a new alert is created, SUPPRESSED
when a silence covers it. Runs inside the caller's transaction and never commits by itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction

from apps.audit.services import record
from apps.core import clock
from apps.tenants.models import Plugin, Tenant

from .history import emit, log_change
from .matching import fingerprint_for
from .models import ACTIVE_STATES, Alert, AlertState, TimelineEntry
from .policies import first_escalation_at
from .signals import EVENT_TRIGGERED
from .silences import active_silences, silence_covering

MAX_TRACE_IDS = 20
MAX_SAMPLES = 10
# Absorbs within this many seconds of the last "occurrence" timeline line are folded into it, so
# a long-running burst writes about one line a minute, not one per batch.
OCCURRENCE_COALESCE_SECONDS = 60
_ATTEMPTS = 3


@dataclass(frozen=True)
class FireResult:
    alert: Alert
    created: bool = False
    reopened: bool = False
    absorbed: bool = False


def _merge(existing: list, new: list, cap: int) -> list:
    """Keep the first ``cap`` distinct items: the evidence that made the alert fire stays put."""
    merged = list(existing)[:cap]
    for item in new:
        if len(merged) >= cap:
            break
        if item and item not in merged:
            merged.append(item)
    return merged


def fire_alert(
    *, tenant: Tenant, plugin: Plugin | None, rule_key: str, rule_version: int, category: str, severity: str,
    title: str, summary: str, recommended_action: str, group_key: dict, labels: dict, window_seconds: int,
    occurrences: int, first_seen: datetime, last_seen: datetime, trace_ids: list[str], samples: list[str],
    source_received_at: datetime | None, auto_resolve_seconds: int | None = None,
) -> FireResult:
    """Absorb, reopen or create the alert for (rule_key, group_key) and return what happened.

    Must run inside the caller's transaction (the detection batch). The fingerprint is
    ``fingerprint_for(rule_key, group_key)``; a group key without ``tenant_id`` gets the tenant's
    id added so two tenants never share an alert. Race policy: the INSERT runs in a savepoint;
    if a concurrent worker created the same active fingerprint first, the unique index refuses
    ours and we absorb into theirs. Events: alert.triggered for created/reopened alerts that are
    not suppressed; absorbing sends nothing (the alert is already known).
    """
    if "tenant_id" not in group_key:
        group_key = {**group_key, "tenant_id": tenant.pk}
    fingerprint = fingerprint_for(rule_key, group_key)
    batch = dict(occurrences=occurrences, first_seen=first_seen, last_seen=last_seen, trace_ids=trace_ids or [],
                 samples=samples or [], auto_resolve_seconds=auto_resolve_seconds)
    for _ in range(_ATTEMPTS):
        active = (Alert.objects.select_for_update(of=("self",)).filter(fingerprint=fingerprint, state__in=ACTIVE_STATES)
                  .select_related("tenant", "plugin").first())
        if active is not None:
            return FireResult(_absorb(active, **batch), absorbed=True)
        reopened = _try_reopen(fingerprint, occurrences=occurrences, last_seen=last_seen)
        if reopened is not None:
            return FireResult(reopened, reopened=True)
        try:
            with transaction.atomic():
                alert = _create(
                    tenant=tenant, plugin=plugin, fingerprint=fingerprint, rule_key=rule_key,
                    rule_version=rule_version, category=category, severity=severity, title=title, summary=summary,
                    recommended_action=recommended_action, group_key=group_key, labels=labels,
                    window_seconds=window_seconds, source_received_at=source_received_at, **batch)
            return FireResult(alert, created=True)
        except IntegrityError:
            continue  # lost the race to a concurrent creator: absorb into its alert on the next pass
    raise RuntimeError(f"fire_alert: no stable outcome for fingerprint {fingerprint} after {_ATTEMPTS} attempts")


def _absorb(alert: Alert, *, occurrences: int, first_seen: datetime, last_seen: datetime, trace_ids: list[str],
            samples: list[str], auto_resolve_seconds: int | None) -> Alert:
    # The row is locked (select_for_update), so merging the JSON lists in Python loses nothing.
    now = clock.now()
    alert.count += occurrences
    alert.first_seen = min(alert.first_seen, first_seen)
    alert.last_seen = max(alert.last_seen, last_seen)
    alert.trace_ids = _merge(alert.trace_ids, trace_ids, MAX_TRACE_IDS)
    alert.samples = _merge(alert.samples, samples, MAX_SAMPLES)
    alert.auto_resolve_seconds = auto_resolve_seconds
    alert.auto_resolve_at = alert.last_seen + timedelta(seconds=auto_resolve_seconds) if auto_resolve_seconds else None
    alert.updated_at = now
    alert.save(update_fields=["count", "first_seen", "last_seen", "trace_ids", "samples", "auto_resolve_seconds",
                              "auto_resolve_at", "updated_at"])
    recent = (TimelineEntry.objects.filter(alert=alert, kind=TimelineEntry.Kind.OCCURRENCE,
                                           at__gte=now - timedelta(seconds=OCCURRENCE_COALESCE_SECONDS))
              .order_by("-at").first())
    if recent is not None:
        total = recent.data.get("occurrences", 0) + occurrences
        recent.data = {"occurrences": total, "batches": recent.data.get("batches", 1) + 1, "count": alert.count}
        recent.message = f"+{total} occurrences (total {alert.count})"
        recent.save(update_fields=["data", "message"])
    else:
        log_change(alert, kind=TimelineEntry.Kind.OCCURRENCE, actor=None,
                   message=f"+{occurrences} occurrences (total {alert.count})",
                   data={"occurrences": occurrences, "batches": 1, "count": alert.count})
    return alert


def _try_reopen(fingerprint: str, *, occurrences: int, last_seen: datetime) -> Alert | None:
    window = settings.ALERT_REOPEN_WINDOW_SECONDS
    if window <= 0:
        return None
    candidate = (Alert.objects.filter(fingerprint=fingerprint, state=AlertState.RESOLVED,
                                      resolved_at__gte=clock.now() - timedelta(seconds=window))
                 .order_by("-resolved_at").values_list("pk", flat=True).first())
    if candidate is None:
        return None
    from apps.core.errors import Conflict

    from .services import alert_reopen  # services import this module

    try:
        return alert_reopen(alert_id=candidate, actor=None, note="fired again", event_type=EVENT_TRIGGERED,
                            occurrences=occurrences, last_seen=last_seen)
    except Conflict:
        return None  # someone reopened it or created a new active alert meanwhile: the loop absorbs


def _create(*, tenant: Tenant, plugin: Plugin | None, fingerprint: str, severity: str, labels: dict,
            occurrences: int, last_seen: datetime, auto_resolve_seconds: int | None, **fields) -> Alert:
    now = clock.now()
    silence = silence_covering(active_silences(tenant_id=tenant.pk, at=now), tenant_id=tenant.pk,
                               plugin_slug=plugin.slug if plugin else None, rule_key=fields["rule_key"],
                               severity=severity, labels=labels or {})
    if silence is not None:
        state_fields = dict(state=AlertState.SUPPRESSED, silence=silence, suppressed_until=silence.ends_at,
                            suppressed_reason=f"silence {silence.pk}: {silence.reason}"[:500])
    else:
        state_fields = dict(state=AlertState.OPEN, next_escalation_at=first_escalation_at(
            tenant_id=tenant.pk, plugin_id=plugin.pk if plugin else None, severity=severity, opened_at=now))
    alert = Alert.objects.create(
        tenant=tenant, plugin=plugin, fingerprint=fingerprint, severity=severity, labels=labels or {},
        count=occurrences, last_seen=last_seen, trace_ids=_merge([], fields.pop("trace_ids"), MAX_TRACE_IDS),
        samples=_merge([], fields.pop("samples"), MAX_SAMPLES), auto_resolve_seconds=auto_resolve_seconds,
        auto_resolve_at=last_seen + timedelta(seconds=auto_resolve_seconds) if auto_resolve_seconds else None,
        created_at=now, updated_at=now, **state_fields, **fields,
    )
    data = {"state": alert.state, "occurrences": occurrences}
    if silence is not None:
        data["silence_id"] = silence.pk
    log_change(alert, kind=TimelineEntry.Kind.CREATED, actor=None,
               message=f"silenced by silence {silence.pk}" if silence else f"{occurrences} occurrences", data=data)
    record("alert.created", target=alert, tenant=tenant.pk,
           data={"rule": alert.rule_key, "severity": severity, "state": alert.state, "fingerprint": fingerprint})
    emit(alert, EVENT_TRIGGERED, {"state": alert.state})
    return alert
