"""``fire_alert``: what the detection engine calls when a group crosses its threshold, and
``alerts_absorb_bulk``: how it feeds the alerts that are already active, one batch at a time.

One fingerprint has at most one active alert (partial unique index). Firing again absorbs into
it; firing shortly after it was resolved reopens it; otherwise a new alert is created, SUPPRESSED
when a silence covers it. Runs inside the caller's transaction and never commits by itself.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Sequence

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q

from apps.audit.services import record, record_many
from apps.core import clock
from apps.core.fastpath import bulk_insert, instance, reserve_ids
from apps.core.vocabulary import EVENT_TRIGGERED, AlertDeliveryState, AlertSource
from apps.tenants.models import Plugin, Tenant

from . import fastpath, opened
from .history import actor_label, emit_many, insert_timeline, log_change, stream_events
from .matching import fingerprint_for
from .models import ACTIVE_STATES, Alert, AlertState, Silence, TimelineEntry
from .policies import first_escalation_at, first_escalations
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
    fingerprint, args = _prepare(
        tenant=tenant, plugin=plugin, rule_key=rule_key, rule_version=rule_version, category=category,
        severity=severity, title=title, summary=summary, recommended_action=recommended_action, group_key=group_key,
        labels=labels, window_seconds=window_seconds, occurrences=occurrences, first_seen=first_seen,
        last_seen=last_seen, trace_ids=trace_ids, samples=samples, source_received_at=source_received_at,
        auto_resolve_seconds=auto_resolve_seconds, source=source, annotations=annotations, value=value,
        threshold=threshold, baseline=baseline)
    batch = {k: args[k] for k in _ABSORBED}
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
                alert = _create(**args)
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
    active_id, resolved_id, resolved_at = None, None, None
    for pk, state, at in (Alert.objects.filter(_taken(clock.now()), fingerprint=fingerprint).order_by()
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


_ABSORBED = ("occurrences", "first_seen", "last_seen", "trace_ids", "samples", "auto_resolve_seconds")


def _prepare(*, tenant: Tenant, rule_key: str, group_key: dict, source: str = AlertSource.LOG_RULE,
             trace_ids: list[str] | None, samples: list[str] | None, annotations: dict | None = None,
             baseline: dict | None = None, **fields) -> tuple[str, dict]:
    """(fingerprint, the keyword arguments of ``_create``) for ``fire_alert``'s arguments."""
    if "tenant_id" not in group_key:
        group_key = {**group_key, "tenant_id": tenant.pk}
    fingerprint = fingerprint_for(rule_key if source == AlertSource.LOG_RULE else f"{source}:{rule_key}", group_key)
    return fingerprint, dict(
        tenant=tenant, fingerprint=fingerprint, rule_key=rule_key, group_key=group_key, source=source,
        trace_ids=trace_ids or [], samples=samples or [], annotations=annotations or {}, baseline=baseline or {},
        **fields)


def _create(**args) -> Alert:
    now = clock.now()
    tenant, plugin = args["tenant"], args["plugin"]
    silence = silence_covering(active_silences(tenant_id=tenant.pk, at=now), tenant_id=tenant.pk,
                               plugin_slug=plugin.slug if plugin else None, rule_key=args["rule_key"],
                               severity=args["severity"], labels=args["labels"] or {})
    escalation_at = None if silence is not None else first_escalation_at(
        tenant_id=tenant.pk, plugin_id=plugin.pk if plugin else None, severity=args["severity"], opened_at=now)
    alert = _unsaved(args, silence=silence, escalation_at=escalation_at, now=now)
    alert.save(force_insert=True)
    opened.note({tenant.pk: 1}, at=now)
    emit_many([(alert, {"state": alert.state})], EVENT_TRIGGERED, new=True)  # first: history tells its state
    message, data, audit = _created_history(alert, silence, args["occurrences"])
    log_change(alert, kind=TimelineEntry.Kind.CREATED, actor=None, message=message, data=data)
    record("alert.created", target=alert, tenant=tenant.pk, data=audit)
    return alert


def _unsaved(args: dict, *, silence: Silence | None, escalation_at: datetime | None, now: datetime) -> Alert:
    """The new Alert row for ``_create``'s arguments: SUPPRESSED under ``silence``, else OPEN."""
    fields = dict(args)
    related = {"tenant": fields.pop("tenant"), "plugin": fields.pop("plugin")}
    occurrences, last_seen = fields.pop("occurrences"), fields["last_seen"]
    auto_resolve_seconds = fields["auto_resolve_seconds"]
    if silence is not None:
        related["silence"] = silence
        state_fields = dict(state=AlertState.SUPPRESSED, suppressed_until=silence.ends_at,
                            suppressed_reason=f"silence {silence.pk}: {silence.reason}"[:500])
    else:
        state_fields = dict(state=AlertState.OPEN, next_escalation_at=escalation_at)
    fields.update(
        labels=fields["labels"] or {}, count=occurrences,
        trace_ids=_merge([], fields["trace_ids"], MAX_TRACE_IDS), samples=_merge([], fields["samples"], MAX_SAMPLES),
        auto_resolve_at=last_seen + timedelta(seconds=auto_resolve_seconds) if auto_resolve_seconds else None,
        created_at=now, updated_at=now, **state_fields)
    return instance(Alert, fields, related)


def _created_history(alert: Alert, silence: Silence | None, occurrences: int) -> tuple[str, dict, dict]:
    """(timeline message, timeline data, audit data) of a created alert, written after its first
    deliveries: the delivery state they gave it is part of its creation (no separate "Delivery
    pending" line, audit row and stream event for every new alert)."""
    data = {"state": alert.state, "occurrences": occurrences}
    if silence is not None:
        data["silence_id"] = silence.pk
    message = f"silenced by silence {silence.pk}" if silence else f"{occurrences} occurrences"
    audit = {"rule": alert.rule_key, "severity": alert.severity, "state": alert.state,
             "fingerprint": alert.fingerprint}
    if alert.delivery_state != AlertDeliveryState.NONE:
        data["delivery_state"] = audit["delivery_state"] = alert.delivery_state
    return message, data, audit


# --------------------------------------------------------------------------- bulk create


def fire_alerts_bulk(items: Sequence[dict]) -> list[FireResult]:
    """``fire_alert`` for every item (its keyword arguments) of one detection batch; results in order.

    Items whose fingerprint has neither an active alert nor one resolved within the reopen window
    (in a storm: nearly all) are created together, with a constant number of statements however
    many there are: one read of their fingerprints, one of the silences and one of the escalation
    policies in force (matched in memory), one multi-row INSERT of the alerts, one INSERT each of
    their timeline lines, stream events and audit rows, and one ``outbox.notify`` for their
    notifications (on PostgreSQL before the alerts, which are then written once, with their first
    delivery state: ``_insert_notified``). Everything else goes through ``fire_alert`` one at a
    time: absorbs, reopens, a fingerprint repeated in ``items``, and any row the partial unique
    index refused because a concurrent batch created that active fingerprint first (``fire_alert``
    then absorbs into the winner's alert). Outcomes, history and notifications are those of calling
    ``fire_alert`` per item. Runs in the caller's transaction; any database error propagates.
    """
    prepared = [_prepare(**item) for item in items]
    now = clock.now()
    taken = _taken_fingerprints({fp for fp, _ in prepared}, now)
    fresh: dict[str, int] = {}
    for i, (fp, _) in enumerate(prepared):
        if fp not in taken and fp not in fresh:
            fresh[fp] = i
    results: list[FireResult | None] = [None] * len(items)
    if fresh:
        alerts = _new_alerts([prepared[i][1] for i in fresh.values()], now)
        notified = _insert_notified([a for a, _ in alerts])
        if not notified:
            fastpath.insert_alerts([a for a, _ in alerts])
        created = [(i, a, s) for i, (a, s) in zip(fresh.values(), alerts) if a.pk is not None]
        opened.note(Counter(a.tenant_id for _, a, _ in created), at=now)
        _record_created([(a, s, prepared[i][1]["occurrences"]) for i, a, s in created], now, notified=notified)
        for i, alert, _ in created:
            results[i] = FireResult(alert, created=True)
    return [r if r is not None else fire_alert(**items[i]) for i, r in enumerate(results)]


def _taken(now: datetime) -> Q:
    """The alerts a firing fingerprint absorbs into or reopens: active, or resolved within the reopen
    window. Written as "active or resolved_at recent" (a row whose resolved_at is recent is either
    resolved then or active again, both taken) so that no arm is a bare ``state`` condition: with
    one, the planner may answer from the (state, severity) index, i.e. read every active or every
    resolved alert, whenever its statistics lag the table (bench/storm.py: 43 ms a batch at 30,000
    active alerts, while the fingerprint index answers in under 1 ms)."""
    wanted = Q(state__in=ACTIVE_STATES)
    window = settings.ALERT_REOPEN_WINDOW_SECONDS
    if window > 0:
        wanted |= Q(resolved_at__gte=now - timedelta(seconds=window))
    return wanted


def _taken_fingerprints(fingerprints: set[str], now: datetime) -> set[str]:
    """Of ``fingerprints``, those ``fire_alert`` would absorb into or reopen (``_find``, for many)."""
    if connection.vendor == "postgresql":
        return fastpath.taken_fingerprints(fingerprints, now)
    return set(Alert.objects.filter(_taken(now), fingerprint__in=fingerprints).order_by()
               .values_list("fingerprint", flat=True).distinct())


def _new_alerts(batch: list[dict], now: datetime) -> list[tuple[Alert, Silence | None]]:
    """Unsaved alerts for ``_create`` arguments, with silences and escalation matched in memory."""
    tenant_ids = {args["tenant"].pk for args in batch}
    silences = list(active_silences(at=now).filter(Q(tenant_id__in=tenant_ids) | Q(tenant__isnull=True)))
    covering = [silence_covering(silences, tenant_id=args["tenant"].pk, rule_key=args["rule_key"],
                                 plugin_slug=args["plugin"].slug if args["plugin"] else None,
                                 severity=args["severity"], labels=args["labels"] or {}) for args in batch]
    keys = [(args["tenant"].pk, args["plugin"].pk if args["plugin"] else None, args["severity"]) for args in batch]
    escalations = first_escalations({k for k, s in zip(keys, covering) if s is None}, opened_at=now)
    return [(_unsaved(args, silence=s, escalation_at=escalations.get(k), now=now), s)
            for args, k, s in zip(batch, keys, covering)]


def _insert_notified(alerts: list[Alert]) -> bool:
    """Write new alerts after their notifications, each with the delivery state its deliveries give
    it, when they are written by COPY (``fastpath.copies``); False (nothing written) otherwise.

    Ids first (reserved from the sequence), then ``outbox.notify`` writes the deliveries that refer
    to them (the foreign key is checked at commit), then one COPY of the alerts with their first
    delivery state already set: no second write of every new alert, which on a page without room
    for both versions also wrote each of its indexes again. All in a savepoint: if a concurrent
    batch took one of the fingerprints meanwhile (unique violation: rare), the deliveries go with
    it, the alerts are as they were built, and the caller writes them first, then notifies.
    """
    if not fastpath.copies(len(alerts)):
        return False
    built = [(a.delivery_state, a.updated_at) for a in alerts]
    try:
        with transaction.atomic():
            reserve_ids(alerts)
            emit_many([(alert, {"state": alert.state}) for alert in alerts], EVENT_TRIGGERED, new=True)
            bulk_insert(alerts)
        return True
    except IntegrityError:
        for alert, (delivery_state, updated_at) in zip(alerts, built):
            alert.pk, alert.delivery_state, alert.updated_at = None, delivery_state, updated_at
            alert._state.adding = True
        return False


def _record_created(created: list[tuple[Alert, Silence | None, int]], now: datetime, *, notified: bool = False) -> None:
    """``_create``'s history for many new alerts: one INSERT per table and one ``outbox.notify``
    (unless ``notified``: ``_insert_notified`` did it)."""
    if not created:
        return
    if not notified:
        emit_many([(alert, {"state": alert.state}) for alert, _, _ in created], EVENT_TRIGGERED, new=True)
    lines, changes, audits = [], [], []
    label, kind = actor_label(None), TimelineEntry.Kind.CREATED
    for alert, silence, occurrences in created:
        message, data, audit = _created_history(alert, silence, occurrences)
        lines.append((alert.pk, now, kind, label, None, message, data))
        changes.append((alert, kind, message))
        audits.append({"target_type": "alerts.alert", "target_id": alert.pk, "tenant": alert.tenant_id,
                       "data": audit})
    insert_timeline(lines)
    stream_events(changes)
    record_many("alert.created", audits)


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
