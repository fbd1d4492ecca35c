"""Alert lifecycle services: every state change an operator, a token or the system makes.

Each transition is a guarded UPDATE (``filter(pk=..., state__in=ALLOWED).update(...)``): when no
row changes, the alert is gone (NotFound) or in a state the transition does not start from
(Conflict, naming that state), so two operators racing get one success and one 409, never two.
In the same transaction each writes a TimelineEntry, an AuditEvent and sends ``alert_event``.
``actor`` is a user, a TokenPrincipal, or None for the system.

State machine (see README "Alert states"):
  OPEN/ESCALATED --ack--> ACKNOWLEDGED;  any active --resolve--> RESOLVED --reopen--> OPEN
  OPEN/ACKNOWLEDGED/ESCALATED --suppress--> SUPPRESSED --unsuppress--> OPEN (or ACKNOWLEDGED)
  OPEN/ACKNOWLEDGED/ESCALATED --escalate--> ESCALATED (apps.alerts.escalation)
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Iterable

from django.db import IntegrityError, transaction
from django.db.models import F, QuerySet

from apps.core import clock
from apps.core.vocabulary import EVENT_MANUAL, EVENT_TRIGGERED, EVENT_UPDATED
from apps.core.errors import ApplicationError, Conflict, NotFound
from apps.delivery.services import send_fallback_now
from apps.tenants.models import TenantMembership

from .escalation import alert_escalate, escalate_due  # noqa: F401  (part of the service API)
from .firing import Absorb, FireResult, alerts_absorb_bulk, fire_alert  # noqa: F401  (part of the service API)
from .history import actor_label, emit, log_change
from .models import ACTIVE_STATES, Alert, AlertState, TimelineEntry
from .payload import notification_for
from .policies import first_escalation_at
from .silences import active_silences, silence_for_alert

ACK_FROM = (AlertState.OPEN, AlertState.ESCALATED)
RESOLVE_FROM = ACTIVE_STATES
SUPPRESS_FROM = (AlertState.OPEN, AlertState.ACKNOWLEDGED, AlertState.ESCALATED)
ASSIGN_FROM = ACTIVE_STATES
MAX_SUPPRESS = timedelta(days=30)
MAX_NOTE = 10_000
BULK_LIMIT = 1000


def _load(alert_id: int) -> Alert:
    return Alert.objects.select_related("tenant", "plugin").get(pk=alert_id)


def _refuse(alert_id: int, verb: str) -> ApplicationError:
    """The error for a guarded update that changed nothing: 404 or 409 naming the current state."""
    state = Alert.objects.filter(pk=alert_id).values_list("state", flat=True).first()
    if state is None:
        return NotFound(f"alert {alert_id} not found")
    return Conflict(f"alert {alert_id} is {state}; cannot {verb}",
                    details={"alert_id": alert_id, "state": state, "action": verb})


def _transition(alert_id: int, allowed: Iterable[str], verb: str, **changes: Any) -> Alert:
    changes["updated_at"] = clock.now()
    if not Alert.objects.filter(pk=alert_id, state__in=list(allowed)).update(**changes):
        raise _refuse(alert_id, verb)
    return _load(alert_id)


def _clean_note(note: str, field: str = "note") -> str:
    note = (note or "").strip()
    if len(note) > MAX_NOTE:
        raise ApplicationError(f"{field} is longer than {MAX_NOTE} characters", details={field: ["too long"]})
    return note


def alert_acknowledge(*, alert_id: int, actor: Any, note: str = "") -> Alert:
    """OPEN/ESCALATED -> ACKNOWLEDGED; stops escalation. Conflict from any other state."""
    note = _clean_note(note)
    now = clock.now()
    with transaction.atomic():
        alert = _transition(alert_id, ACK_FROM, "acknowledge", state=AlertState.ACKNOWLEDGED, acknowledged_at=now,
                            acknowledged_by=actor_label(actor), next_escalation_at=None)
        log_change(alert, kind=TimelineEntry.Kind.ACKNOWLEDGED, actor=actor, message=note,
                   audit_action="alert.acknowledged")
        emit(alert, EVENT_UPDATED, {"state": alert.state, "acknowledged_by": alert.acknowledged_by})
    return alert


def alert_resolve(*, alert_id: int, actor: Any, note: str = "", _auto: bool = False) -> Alert:
    """Any active state -> RESOLVED (operators, automation tokens, the auto-resolve sweeper).

    A fingerprint that fires again within ALERT_REOPEN_WINDOW_SECONDS reopens this alert.
    """
    note = _clean_note(note)
    now = clock.now()
    guard = {"auto_resolve_at__lte": now} if _auto else {}
    with transaction.atomic():
        changes = dict(state=AlertState.RESOLVED, resolved_at=now, resolved_by=actor_label(actor),
                       next_escalation_at=None, auto_resolve_at=None, suppressed_until=None, updated_at=now)
        if not Alert.objects.filter(pk=alert_id, state__in=RESOLVE_FROM, **guard).update(**changes):
            raise _refuse(alert_id, "resolve")
        alert = _load(alert_id)
        data = {"auto_resolved": True} if _auto else {}
        log_change(alert, kind=TimelineEntry.Kind.RESOLVED, actor=actor, message=note, data=data,
                   audit_action="alert.auto_resolved" if _auto else "alert.resolved")
        emit(alert, EVENT_UPDATED, {"state": alert.state, "resolved_by": alert.resolved_by, **data})
    return alert


def _opening_changes(alert: Alert, now) -> dict:
    """State fields for an alert that becomes active again: OPEN with a fresh escalation clock,
    or SUPPRESSED (quietly) when an active silence covers it."""
    silence = silence_for_alert(alert, active_silences(tenant_id=alert.tenant_id, at=now))
    if silence is not None:
        return dict(state=AlertState.SUPPRESSED, silence=silence, suppressed_until=silence.ends_at,
                    suppressed_reason=f"silence {silence.pk}: {silence.reason}"[:500], next_escalation_at=None)
    return dict(state=AlertState.OPEN, next_escalation_at=first_escalation_at(
        tenant_id=alert.tenant_id, plugin_id=alert.plugin_id, severity=alert.severity, opened_at=now))


def alert_reopen(*, alert_id: int, actor: Any, note: str = "", event_type: str = EVENT_UPDATED,
                 occurrences: int = 0, last_seen=None) -> Alert:
    """RESOLVED -> OPEN (or SUPPRESSED under an active silence), same id and timeline.

    Clears acknowledgement and escalation. Conflict when not RESOLVED or when another active
    alert already has this fingerprint (the partial unique index decides, inside a savepoint).
    ``fire_alert`` passes the new occurrences and event_type alert.triggered.
    """
    note = _clean_note(note)
    now = clock.now()
    with transaction.atomic():
        try:
            alert = Alert.objects.select_related("tenant", "plugin").get(pk=alert_id)
        except Alert.DoesNotExist:
            raise NotFound(f"alert {alert_id} not found") from None
        changes = _opening_changes(alert, now)
        seen = max(alert.last_seen, last_seen) if last_seen else alert.last_seen
        changes.update(
            reopened_count=F("reopened_count") + 1, resolved_at=None, resolved_by="", acknowledged_at=None,
            acknowledged_by="", escalation_level=0, last_escalated_at=None, count=F("count") + occurrences,
            last_seen=seen, updated_at=now,
            auto_resolve_at=seen + timedelta(seconds=alert.auto_resolve_seconds) if alert.auto_resolve_seconds else None,
        )
        if changes["state"] == AlertState.OPEN:
            changes.update(silence=None, suppressed_until=None, suppressed_reason="")
        try:
            with transaction.atomic():
                changed = Alert.objects.filter(pk=alert_id, state=AlertState.RESOLVED).update(**changes)
        except IntegrityError:
            raise Conflict(f"alert {alert_id} cannot reopen: another active alert has its fingerprint",
                           details={"alert_id": alert_id, "state": alert.state, "action": "reopen"}) from None
        if not changed:
            raise _refuse(alert_id, "reopen")
        alert = _load(alert_id)
        data = {"reopened_count": alert.reopened_count, "state": alert.state}
        log_change(alert, kind=TimelineEntry.Kind.REOPENED, actor=actor, message=note, data=data,
                   audit_action="alert.reopened")
        emit(alert, event_type, {**data, "reopened": True})
    return alert


def alert_assign(*, alert_id: int, actor: Any, assignee: Any | None) -> Alert:
    """Set (or clear, with None) the owner of an active alert; assignee == actor is taking ownership.

    The assignee must be an active staff user or a member of the alert's tenant (400 naming
    ``assignee`` otherwise). Conflict when the alert is RESOLVED.
    """
    if assignee is not None:
        tenant_id = Alert.objects.filter(pk=alert_id).values_list("tenant_id", flat=True).first()
        if tenant_id is None:
            raise NotFound(f"alert {alert_id} not found")
        allowed = assignee.is_active and (
            assignee.is_staff or TenantMembership.objects.filter(user=assignee, tenant_id=tenant_id).exists())
        if not allowed:
            # Word for word what an unknown name gets (selectors.user_for_assignment): a tenant must
            # not learn which usernames exist in other tenants.
            message = f"no active user {assignee.get_username()!r}"
            raise ApplicationError(message, details={"assignee": [message]})
    with transaction.atomic():
        alert = _transition(alert_id, ASSIGN_FROM, "assign", assignee=assignee)
        name = assignee.get_username() if assignee is not None else None
        own = assignee is not None and getattr(actor, "pk", None) == assignee.pk and not hasattr(actor, "token_id")
        message = "took ownership" if own else (f"assigned to {name}" if name else "unassigned")
        log_change(alert, kind=TimelineEntry.Kind.ASSIGNED, actor=actor, message=message, data={"assignee": name},
                   audit_action="alert.assigned")
        emit(alert, EVENT_UPDATED, {"assignee": name})
    return alert


def alert_add_note(*, alert_id: int, actor: Any, text: str) -> TimelineEntry:
    """Append a note in any state (resolved alerts too). Notes are internal: no webhook event."""
    text = _clean_note(text, "text")
    if not text:
        raise ApplicationError("a note needs text", details={"text": ["required"]})
    with transaction.atomic():
        try:
            alert = Alert.objects.select_for_update().get(pk=alert_id)
        except Alert.DoesNotExist:
            raise NotFound(f"alert {alert_id} not found") from None
        return log_change(alert, kind=TimelineEntry.Kind.NOTE, actor=actor, message=text, audit_action="alert.note")


def alert_suppress(*, alert_id: int, actor: Any, duration: timedelta, reason: str) -> Alert:
    """OPEN/ACKNOWLEDGED/ESCALATED -> SUPPRESSED until now + duration (at most 30 days).

    No escalation while suppressed; the unsuppress sweeper restores it when the time is up.
    """
    reason = (reason or "").strip()
    if not reason:
        raise ApplicationError("a reason is required", details={"reason": ["required"]})
    if duration <= timedelta(0) or duration > MAX_SUPPRESS:
        raise ApplicationError("duration must be positive and at most 30 days", details={"duration": ["out of range"]})
    until = clock.now() + duration
    with transaction.atomic():
        alert = _transition(alert_id, SUPPRESS_FROM, "suppress", state=AlertState.SUPPRESSED, suppressed_until=until,
                            suppressed_reason=reason[:500], next_escalation_at=None)
        data = {"state": alert.state, "suppressed_until": until.isoformat(), "reason": alert.suppressed_reason}
        log_change(alert, kind=TimelineEntry.Kind.SUPPRESSED, actor=actor, message=reason, data=data,
                   audit_action="alert.suppressed")
        emit(alert, EVENT_UPDATED, data)
    return alert


def alert_unsuppress(*, alert_id: int, actor: Any, note: str = "", only_if_due: bool = False) -> Alert:
    """SUPPRESSED -> ACKNOWLEDGED if it was acknowledged before, else OPEN (escalation restarts).

    An alert that was born under a silence has notified nobody: it now sends alert.triggered;
    others send alert.updated. ``only_if_due`` (the sweeper) acts only once suppressed_until passed.
    """
    now = clock.now()
    with transaction.atomic():
        alert = Alert.objects.select_for_update(of=("self",)).select_related("plugin").filter(pk=alert_id).first()
        if alert is None:
            raise NotFound(f"alert {alert_id} not found")
        if alert.state != AlertState.SUPPRESSED:
            raise _refuse(alert_id, "unsuppress")
        if only_if_due and (alert.suppressed_until is None or alert.suppressed_until > now):
            raise Conflict(f"alert {alert_id} is suppressed until {alert.suppressed_until}",
                           details={"alert_id": alert_id, "state": alert.state, "action": "unsuppress"})
        was_silent = alert.silence_id is not None
        if alert.acknowledged_at:
            state, next_at = AlertState.ACKNOWLEDGED, None
        else:
            state = AlertState.OPEN
            next_at = first_escalation_at(tenant_id=alert.tenant_id, plugin_id=alert.plugin_id,
                                          severity=alert.severity, opened_at=now)
        alert = _transition(alert_id, (AlertState.SUPPRESSED,), "unsuppress", state=state, suppressed_until=None,
                            suppressed_reason="", silence=None, next_escalation_at=next_at)
        log_change(alert, kind=TimelineEntry.Kind.UNSUPPRESSED, actor=actor, message=_clean_note(note),
                   data={"state": state}, audit_action="alert.unsuppressed")
        emit(alert, EVENT_TRIGGERED if was_silent else EVENT_UPDATED, {"state": state})
    return alert


def alerts_acknowledge_bulk(*, alerts: QuerySet[Alert], actor: Any, note: str = "", limit: int = BULK_LIMIT) -> list[int]:
    """Acknowledge every OPEN/ESCALATED alert of ``alerts`` (already filtered and tenant-scoped),
    at most ``limit`` per call. One timeline line, audit row and event per alert.

    Rows another transaction holds are skipped (SKIP LOCKED), not waited for: whoever holds them
    is acknowledging or resolving them right now. Returns the acknowledged ids.
    """
    note = _clean_note(note)
    now = clock.now()
    label = actor_label(actor)
    with transaction.atomic():
        ids = list(alerts.filter(state__in=ACK_FROM).order_by("pk")
                   .select_for_update(skip_locked=True, of=("self",)).values_list("pk", flat=True)[:limit])
        Alert.objects.filter(pk__in=ids, state__in=ACK_FROM).update(
            state=AlertState.ACKNOWLEDGED, acknowledged_at=now, acknowledged_by=label, next_escalation_at=None,
            updated_at=now)
        for alert in Alert.objects.filter(pk__in=ids).select_related("tenant", "plugin"):
            log_change(alert, kind=TimelineEntry.Kind.ACKNOWLEDGED, actor=actor, message=note,
                       data={"bulk": True}, audit_action="alert.acknowledged")
            emit(alert, EVENT_UPDATED, {"state": alert.state, "acknowledged_by": label})
    return ids


def auto_resolve_due(*, limit: int = 500) -> int:
    """Resolve (as the system) active alerts whose group saw no event for auto_resolve_seconds.

    Each alert is its own guarded transaction: an alert that absorbed new occurrences since it
    was selected has a later auto_resolve_at and is left alone. Returns how many resolved.
    """
    now = clock.now()
    ids = list(Alert.objects.filter(state__in=ACTIVE_STATES, auto_resolve_at__lte=now)
               .order_by("auto_resolve_at").values_list("pk", "auto_resolve_seconds")[:limit])
    done = 0
    for alert_id, seconds in ids:
        try:
            alert_resolve(alert_id=alert_id, actor=None, _auto=True,
                          note=f"auto-resolved: no matching events for {_human(seconds)}")
            done += 1
        except (Conflict, NotFound):
            continue
    return done


def unsuppress_due(*, limit: int = 500) -> int:
    """Unsuppress (as the system) alerts whose suppression or silence has ended. Returns how many."""
    ids = list(Alert.objects.filter(state=AlertState.SUPPRESSED, suppressed_until__lte=clock.now())
               .order_by("suppressed_until").values_list("pk", flat=True)[:limit])
    done = 0
    for alert_id in ids:
        try:
            alert_unsuppress(alert_id=alert_id, actor=None, note="suppression ended", only_if_due=True)
            done += 1
        except (Conflict, NotFound):
            continue
    return done


def _human(seconds: int | None) -> str:
    seconds = seconds or 0
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def alert_send_fallback(*, alert: Alert, channel: str, actor: Any) -> Any:
    """Operator's manual email/SMS about ``alert`` now (``apps.delivery.services.send_fallback_now``:
    written, attempted at once, retried by the sweeper, audited); returns the delivery row."""
    return send_fallback_now(notification=notification_for(alert, EVENT_MANUAL), channel=channel, actor=actor)


# --- bulk transitions (console "Bulk actions") ---------------------------------------------------

@dataclass
class BulkOutcome:
    """What a bulk transition did: ``done`` ids in order, and why each other alert of the
    selection was left alone (``skipped``: id -> reason). Skipping is never an error."""

    done: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)


def _bulk(alerts: QuerySet[Alert], allowed: Iterable[str], limit: int,
          change: Callable[[int], None], refuse: Callable[[int], str | None] | None = None) -> BulkOutcome:
    """Run ``change(alert_id)`` (a single-alert service) for every alert of ``alerts`` in an
    ``allowed`` state, at most ``limit``, all in one transaction.

    The rows are locked first with SKIP LOCKED: a row another transaction holds is being changed
    right now and is reported, not waited for. ``refuse(alert_id)`` may name a reason to skip an
    alert before changing it. A Conflict/NotFound from the service (the row changed under us) is
    a skip too; any other error aborts the whole batch, so nothing is half-written.
    """
    allowed = list(allowed)
    outcome = BulkOutcome()
    with transaction.atomic():
        ids = list(alerts.filter(state__in=allowed).order_by("pk")
                   .select_for_update(skip_locked=True, of=("self",)).values_list("pk", flat=True)[:limit])
        for alert_id in ids:
            reason = refuse(alert_id) if refuse else None
            if reason:
                outcome.skipped[alert_id] = reason
                continue
            try:
                change(alert_id)
            except (Conflict, NotFound) as exc:
                outcome.skipped[alert_id] = exc.message
                continue
            outcome.done.append(alert_id)
        # Report the rest of the selection (bounded): wrong state, locked, or past the limit.
        for alert_id, state in (alerts.exclude(pk__in=ids).order_by("pk").values_list("pk", "state")[:limit]):
            if state not in allowed:
                outcome.skipped[alert_id] = f"is {state.lower()}"
            elif len(ids) >= limit:
                outcome.skipped[alert_id] = f"over the limit of {limit} alerts per request"
            else:
                outcome.skipped[alert_id] = "being changed by someone else right now"
    return outcome


def alerts_resolve_bulk(*, alerts: QuerySet[Alert], actor: Any, note: str = "", limit: int = BULK_LIMIT) -> BulkOutcome:
    """``alert_resolve`` for every active alert of ``alerts`` (already filtered and tenant-scoped),
    at most ``limit``; the others are skipped with a reason. 400 when the note is too long."""
    note = _clean_note(note)
    return _bulk(alerts, RESOLVE_FROM, limit, lambda pk: alert_resolve(alert_id=pk, actor=actor, note=note))


def alerts_suppress_bulk(*, alerts: QuerySet[Alert], actor: Any, duration: timedelta, reason: str,
                         limit: int = BULK_LIMIT) -> BulkOutcome:
    """``alert_suppress`` for every OPEN/ACKNOWLEDGED/ESCALATED alert of ``alerts``, at most
    ``limit``. A missing reason or a duration outside (0, 30 days] fails the whole call (400)."""
    reason = (reason or "").strip()
    if not reason:
        raise ApplicationError("a reason is required", details={"reason": ["required"]})
    if duration <= timedelta(0) or duration > MAX_SUPPRESS:
        raise ApplicationError("duration must be positive and at most 30 days", details={"duration": ["out of range"]})
    return _bulk(alerts, SUPPRESS_FROM, limit,
                 lambda pk: alert_suppress(alert_id=pk, actor=actor, duration=duration, reason=reason))


def alerts_assign_bulk(*, alerts: QuerySet[Alert], actor: Any, assignee: Any | None,
                       limit: int = BULK_LIMIT) -> BulkOutcome:
    """``alert_assign`` (None: unassign) for every active alert of ``alerts``, at most ``limit``.

    Alerts of a tenant the assignee may not work (not staff, not a member) are skipped with that
    reason; when that holds for every tenant of the selection the call fails exactly as an
    unknown name does (400 naming ``assignee``), so no tenant learns other tenants' usernames.
    """
    refuse = None
    if assignee is not None:
        name = assignee.get_username()
        tenant_of = dict(alerts.filter(state__in=list(ASSIGN_FROM)).order_by()
                         .values_list("pk", "tenant_id")[:limit])
        members = set(TenantMembership.objects.filter(user=assignee, tenant_id__in=set(tenant_of.values()))
                      .values_list("tenant_id", flat=True))
        if tenant_of and not assignee.is_staff and not members:
            message = f"no active user {name!r}"
            raise ApplicationError(message, details={"assignee": [message]})

        def refuse(alert_id: int) -> str | None:
            if assignee.is_staff:
                return None
            if alert_id not in tenant_of:  # became active after the look-up above
                tenant_of[alert_id] = Alert.objects.filter(pk=alert_id).values_list("tenant_id", flat=True).first()
                if TenantMembership.objects.filter(user=assignee, tenant_id=tenant_of[alert_id]).exists():
                    members.add(tenant_of[alert_id])
            return None if tenant_of[alert_id] in members else f"{name} is not a member of its tenant"

    return _bulk(alerts, ASSIGN_FROM, limit, lambda pk: alert_assign(alert_id=pk, actor=actor, assignee=assignee),
                 refuse)
