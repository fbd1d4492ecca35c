"""``fire_alert``: what the detection engine calls when a group crosses its threshold, and
``alerts_absorb_bulk``: how it feeds the alerts that are already active, one batch at a time.

One fingerprint has at most one active alert (partial unique index). Firing again absorbs into
it; firing shortly after it was resolved reopens it; otherwise a new alert is created, SUPPRESSED
when a silence covers it. Runs inside the caller's transaction and never commits by itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Sequence

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q

from apps.audit.services import record
from apps.core import clock
from apps.core.vocabulary import EVENT_TRIGGERED, AlertSource
from apps.tenants.models import Plugin, Tenant

from . import fastpath
from .history import emit, log_change
from .matching import fingerprint_for
from .models import ACTIVE_STATES, Alert, AlertState, TimelineEntry
from .policies import first_escalation_at
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
    source: str = AlertSource.LOG_RULE, annotations: dict | None = None, value: float | None = None,
    threshold: float | None = None, baseline: dict | None = None,
) -> FireResult:
    """Absorb, reopen or create the alert for (source, rule_key, group_key) and return what happened.

    Must run inside the caller's transaction (the detection batch). The fingerprint is
    ``fingerprint_for(rule_key, group_key)`` for log rules and ``fingerprint_for("<source>:<rule_key>",
    group_key)`` for other sources (so a source's keys never meet a log rule's); a group key without
    ``tenant_id`` gets the tenant's id added so two tenants never share an alert. ``annotations``,
    ``value``, ``threshold`` and ``baseline`` are set when the alert is created or reopened. Race policy: the INSERT runs in a savepoint;
    if a concurrent worker created the same active fingerprint first, the unique index refuses
    ours and we absorb into theirs. Events: alert.triggered for created/reopened alerts that are
    not suppressed; absorbing sends nothing (the alert is already known).
    """
    if "tenant_id" not in group_key:
        group_key = {**group_key, "tenant_id": tenant.pk}
    fingerprint = fingerprint_for(rule_key if source == AlertSource.LOG_RULE else f"{source}:{rule_key}", group_key)
    batch = dict(occurrences=occurrences, first_seen=first_seen, last_seen=last_seen, trace_ids=trace_ids or [],
                 samples=samples or [], auto_resolve_seconds=auto_resolve_seconds)
    for _ in range(_ATTEMPTS):
        active_id, resolved_id = _find(fingerprint)
        if active_id is not None:
            active = (Alert.objects.select_for_update(of=("self",)).filter(pk=active_id, state__in=ACTIVE_STATES)
                      .select_related("tenant", "plugin").first())
            if active is None:
                continue  # resolved since we looked: look again
            return FireResult(_absorb(active, **batch), absorbed=True)
        if resolved_id is not None:
            reopened = _try_reopen(resolved_id, occurrences=occurrences, last_seen=last_seen)
            if reopened is not None:
                return FireResult(reopened, reopened=True)
        try:
            with transaction.atomic():
                alert = _create(
                    tenant=tenant, plugin=plugin, fingerprint=fingerprint, rule_key=rule_key,
                    rule_version=rule_version, category=category, severity=severity, title=title, summary=summary,
                    recommended_action=recommended_action, group_key=group_key, labels=labels,
                    window_seconds=window_seconds, source_received_at=source_received_at, source=source,
                    annotations=annotations or {}, value=value, threshold=threshold, baseline=baseline or {}, **batch)
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


def _find(fingerprint: str) -> tuple[int | None, int | None]:
    """(the active alert of ``fingerprint``, else the one resolved most recently within the reopen
    window): one unlocked read for what used to be two; the caller locks what it acts on."""
    window = settings.ALERT_REOPEN_WINDOW_SECONDS
    wanted = Q(state__in=ACTIVE_STATES)
    if window > 0:
        wanted |= Q(state=AlertState.RESOLVED, resolved_at__gte=clock.now() - timedelta(seconds=window))
    active_id, resolved_id, resolved_at = None, None, None
    for pk, state, at in (Alert.objects.filter(wanted, fingerprint=fingerprint).order_by()
                          .values_list("pk", "state", "resolved_at")):
        if state != AlertState.RESOLVED:
            active_id = pk
        elif resolved_at is None or at > resolved_at:
            resolved_id, resolved_at = pk, at
    return active_id, resolved_id


def _try_reopen(candidate: int, *, occurrences: int, last_seen: datetime) -> Alert | None:
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


# --------------------------------------------------------------------------- bulk absorb


@dataclass(frozen=True)
class Absorb:
    """New occurrences for an alert the caller believes active (``alerts_absorb_bulk``)."""

    alert_id: int
    occurrences: int
    first_seen: datetime
    last_seen: datetime
    trace_ids: Sequence[str] = field(default_factory=tuple)
    samples: Sequence[str] = field(default_factory=tuple)
    auto_resolve_seconds: int | None = None


def _combine(items: Sequence[Absorb]) -> dict[int, Absorb]:
    """One item per alert (two for the same alert would make ``UPDATE .. FROM`` keep only one)."""
    out: dict[int, Absorb] = {}
    for it in items:
        prev = out.get(it.alert_id)
        if prev is None:
            out[it.alert_id] = it
            continue
        out[it.alert_id] = Absorb(
            alert_id=it.alert_id, occurrences=prev.occurrences + it.occurrences,
            first_seen=min(prev.first_seen, it.first_seen), last_seen=max(prev.last_seen, it.last_seen),
            trace_ids=[*prev.trace_ids, *it.trace_ids], samples=[*prev.samples, *it.samples],
            auto_resolve_seconds=it.auto_resolve_seconds)
    return out


def alerts_absorb_bulk(items: Sequence[Absorb]) -> dict[int, int]:
    """Add each item's occurrences to its alert, if that alert is still active; {alert id: new count}.

    The bulk form of what ``fire_alert`` does for an active alert (count, first/last seen, trace
    ids and samples up to their caps, auto-resolve deadline, a coalesced "occurrence" timeline
    line at most about once a minute), for every alert of a detection batch at once. Like an
    absorb in ``fire_alert`` it sends no event and writes no audit row. An alert that is not
    active any more (resolved, even by a transaction that committed while this one waited for
    its row lock) or is gone absorbs nothing and is missing from the result: the caller decides
    whether its group fires anew. Runs in the caller's transaction.

    Cost: see ``fastpath.absorb_bulk`` (a constant number of statements on PostgreSQL).
    """
    if not items:
        return {}
    return fastpath.absorb_bulk(_combine(items), clock.now())
