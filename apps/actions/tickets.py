"""Tickets: create one for an alert (on demand or by the sweep), comment and close it on resolve.

Claims, so two beats or a beat and an operator never create two tickets for one alert: a ticket is
claimed by INSERTing its row (one per alert, unique), or, for a failed or abandoned one, by a
conditional UPDATE of its lease. The tracker call runs outside any transaction; its outcome, the
alert's ``ticket_key``/``ticket_url``, a timeline line and an audit row commit together afterwards.
A crash between the call and the record leaves a PENDING row whose lease expires and is retried, so
a tracker may (rarely) see a second create: at-least-once, like webhooks.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q

from apps.alerts.history import emit, log_change
from apps.alerts.models import ACTIVE_STATES, Alert, AlertState, TimelineEntry
from apps.alerts.payload import alert_payload
from apps.alerts.selectors import tenants_with_alerts_since
from apps.core import clock
from apps.core.errors import Conflict, NotFound
from apps.core.vocabulary import EVENT_UPDATED
from apps.delivery.crypto import CryptoError

from . import outbound, trackers
from .models import Ticket, TicketBridge
from .secrets import unseal

LEASE = timedelta(seconds=120)
RETRY_AFTER = timedelta(seconds=60)
NOTE = TimelineEntry.Kind.NOTE  # the alerts app has no ticket kind; data["event"] tells them apart


def _load_alert(alert_id: int) -> Alert:
    return Alert.objects.select_related("tenant", "plugin", "assignee").get(pk=alert_id)


def _call(bridge: TicketBridge, url: str, body: bytes) -> outbound.CallResult:
    try:
        secret = unseal(bridge.secret_encrypted)
    except CryptoError as exc:
        raise outbound.CallFailed(str(exc), latency_ms=0) from exc
    return outbound.post(url, body=body, headers=trackers.auth_headers(bridge, secret))


# --- creation --------------------------------------------------------------------------------------

def _claim_new(alert: Alert, bridge: TicketBridge) -> Ticket | None:
    now = clock.now()
    try:
        with transaction.atomic():
            return Ticket.objects.create(alert=alert, bridge=bridge, state=Ticket.State.PENDING, lease_until=now + LEASE,
                                         created_at=now, updated_at=now)
    except IntegrityError:  # someone else holds (or made) this alert's ticket
        return None


def _reclaim(ticket_id: int, *, due_only: bool) -> bool:
    """Take over a FAILED ticket (or a PENDING one whose worker vanished) by a conditional UPDATE."""
    now = clock.now()
    qs = Ticket.objects.filter(pk=ticket_id).filter(
        Q(state=Ticket.State.FAILED) | Q(state=Ticket.State.PENDING, lease_until__lte=now))
    if due_only:
        qs = qs.filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now), attempts__lt=settings.TICKETS_MAX_ATTEMPTS)
    return bool(qs.update(state=Ticket.State.PENDING, lease_until=now + LEASE, updated_at=now))


def ticket_create(*, alert_id: int, actor: Any) -> Ticket:
    """Create the ticket for an alert now (console button, API). Returns the ticket, OPEN or FAILED.

    NotFound without the alert; Conflict when the tenant has no enabled bridge or the alert already
    has a ticket (naming its key) or one is being created.
    """
    try:
        alert = _load_alert(alert_id)
    except Alert.DoesNotExist:
        raise NotFound(f"alert {alert_id} not found") from None
    bridge = TicketBridge.objects.filter(tenant_id=alert.tenant_id, enabled=True).first()
    if bridge is None:
        raise Conflict(f"tenant {alert.tenant.slug!r} has no enabled ticket bridge",
                       details={"ticket_bridge": ["not configured"]})
    existing = Ticket.objects.filter(alert=alert).first()
    if existing is None:
        ticket = _claim_new(alert, bridge)
    elif _reclaim(existing.pk, due_only=False):
        ticket = existing
        Ticket.objects.filter(pk=ticket.pk).update(bridge=bridge)
    else:
        ticket = None
    if ticket is None:
        current = Ticket.objects.filter(alert=alert).first()
        what = f"ticket {current.key}" if current and current.key else "a ticket being created"
        raise Conflict(f"alert {alert_id} already has {what}",
                       details={"ticket": current.key if current else None, "state": current.state if current else None})
    return _send_create(ticket.pk, bridge, alert, actor)


def _send_create(ticket_id: int, bridge: TicketBridge, alert: Alert, actor: Any) -> Ticket:
    payload = alert_payload(alert)
    try:
        url, body = trackers.create_request(bridge, payload)
        result = _call(bridge, url, body)
        key, link = trackers.read_created(bridge, result)
    except Exception as exc:  # noqa: BLE001 - every failure is recorded on the ticket, never lost
        return _record_create_failure(ticket_id, alert, actor, _describe(exc))
    now = clock.now()
    with transaction.atomic():
        Ticket.objects.filter(pk=ticket_id).update(key=key, url=link, state=Ticket.State.OPEN, lease_until=None,
                                                   attempts=0, last_error="", updated_at=now)
        Alert.objects.filter(pk=alert.pk).update(ticket_key=key, ticket_url=link, updated_at=now)
        alert = _load_alert(alert.pk)
        data = {"event": "ticket.created", "ticket": key, "url": link, "status": result.status,
                "latency_ms": result.latency_ms}
        log_change(alert, kind=NOTE, actor=actor, message=f"Ticket {key} created", data=data,
                   audit_action="alert.ticket_created")
        emit(alert, EVENT_UPDATED, {"ticket": {"key": key, "url": link or None}})
    return Ticket.objects.get(pk=ticket_id)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (outbound.CallFailed, trackers.TrackerError)):
        return str(exc)[:1000]
    return f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"[:1000]


def _record_create_failure(ticket_id: int, alert: Alert, actor: Any, error: str) -> Ticket:
    now = clock.now()
    with transaction.atomic():
        Ticket.objects.filter(pk=ticket_id).update(state=Ticket.State.FAILED, attempts=F("attempts") + 1,
                                                   last_error=error, lease_until=now + RETRY_AFTER, updated_at=now)
        log_change(alert, kind=NOTE, actor=actor, message=f"Ticket creation failed: {error}",
                   data={"event": "ticket.failed", "error": error}, audit_action="alert.ticket_failed")
    return Ticket.objects.get(pk=ticket_id)


def create_due(*, limit: int = 100) -> int:
    """The sweep: tickets for new alerts of each bridge's auto-create severities, and retries of
    failed ones. Safe to run concurrently (claims). Returns how many tickets it tried to create."""
    now = clock.now()
    done = 0
    lookback = now - timedelta(seconds=settings.ACTIONS_SWEEP_LOOKBACK_SECONDS)
    bridges = list(TicketBridge.objects.filter(enabled=True).exclude(auto_create_severities=[]))
    active = tenants_with_alerts_since({b.tenant_id for b in bridges}, lookback)
    for bridge in bridges:
        if bridge.tenant_id not in active:
            continue  # no alert of its tenant in the lookback: nothing to look for
        since = max(lookback, bridge.created_at)
        fresh = (Alert.objects.filter(tenant_id=bridge.tenant_id, severity__in=bridge.auto_create_severities,
                                      state__in=ACTIVE_STATES, created_at__gte=since, ticket__isnull=True)
                 .order_by("created_at").values_list("pk", flat=True)[:limit])
        for alert_id in fresh:
            alert = _load_alert(alert_id)
            ticket = _claim_new(alert, bridge)
            if ticket is not None:
                _send_create(ticket.pk, bridge, alert, None)
                done += 1
    retry = (Ticket.objects.filter(bridge__enabled=True, attempts__lt=settings.TICKETS_MAX_ATTEMPTS)
             .filter(Q(state=Ticket.State.FAILED, lease_until__lte=now) | Q(state=Ticket.State.PENDING, lease_until__lte=now))
             .select_related("bridge").order_by("updated_at")[:limit])
    for ticket in retry:
        if _reclaim(ticket.pk, due_only=True):
            _send_create(ticket.pk, ticket.bridge, _load_alert(ticket.alert_id), None)
            done += 1
    return done


# --- resolve: comment and close --------------------------------------------------------------------

def _resolve_reason(alert: Alert) -> str:
    entry = (TimelineEntry.objects.filter(alert=alert, kind=TimelineEntry.Kind.RESOLVED)
             .order_by("-at", "-id").values_list("message", flat=True).first())
    return (entry or "").strip() or "no reason given"


def sync_resolved_due(*, limit: int = 100) -> int:
    """The sweep: for every open ticket whose alert was resolved since the last comment, add the
    comment "Resolved by <who>: <reason>" and (``close_on_resolve``) close/transition it. Whoever
    resolved it (console, API, auto-resolve, Alertmanager), the alerts app never calls us."""
    now = clock.now()
    due = (Ticket.objects.filter(state=Ticket.State.OPEN, alert__state=AlertState.RESOLVED, bridge__enabled=True,
                                 attempts__lt=settings.TICKETS_MAX_ATTEMPTS)
           .filter(Q(synced_resolved_at__isnull=True) | Q(synced_resolved_at__lt=F("alert__resolved_at")))
           .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
           .values_list("pk", flat=True)[:limit])
    done = 0
    for ticket_id in due:
        claimed = (Ticket.objects.filter(pk=ticket_id, state=Ticket.State.OPEN)
                   .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
                   .update(lease_until=now + LEASE))
        if claimed:
            _sync_one(Ticket.objects.select_related("bridge").get(pk=ticket_id))
            done += 1
    return done


def _sync_one(ticket: Ticket) -> None:
    bridge = ticket.bridge
    alert = _load_alert(ticket.alert_id)
    text = f"Resolved by {alert.resolved_by or 'system'}: {_resolve_reason(alert)}"
    steps: list[str] = []
    try:
        url, body = trackers.comment_request(bridge, ticket.key, text) if (
            bridge.kind == TicketBridge.Kind.JIRA or bridge.comment_url_template) else ("", b"")
        if url:
            result = _call(bridge, url, body)
            if not result.ok:
                raise trackers.TrackerError(f"comment: {trackers.error_message(result)}")
            steps.append("commented")
        close = trackers.transition_request(bridge, ticket.key) if bridge.close_on_resolve else None
        if close:
            result = _call(bridge, *close)
            if not result.ok:
                raise trackers.TrackerError(f"transition: {trackers.error_message(result)}")
            steps.append("transitioned")
    except Exception as exc:  # noqa: BLE001 - recorded and retried after RETRY_AFTER
        error = _describe(exc)
        now = clock.now()
        with transaction.atomic():
            Ticket.objects.filter(pk=ticket.pk).update(attempts=F("attempts") + 1, last_error=error,
                                                       lease_until=now + RETRY_AFTER, updated_at=now)
            log_change(alert, kind=NOTE, actor=None, message=f"Ticket {ticket.key}: resolve sync failed: {error}",
                       data={"event": "ticket.sync_failed", "ticket": ticket.key, "error": error},
                       audit_action="alert.ticket_sync_failed")
        return
    closed = bridge.close_on_resolve
    now = clock.now()
    with transaction.atomic():
        Ticket.objects.filter(pk=ticket.pk).update(
            state=Ticket.State.CLOSED if closed else Ticket.State.OPEN, synced_resolved_at=alert.resolved_at,
            lease_until=None, attempts=0, last_error="", updated_at=now)
        message = f"Ticket {ticket.key}: {' and '.join(steps) or 'resolved'}" + (" (closed)" if closed else "")
        log_change(alert, kind=NOTE, actor=None, message=message,
                   data={"event": "ticket.resolved", "ticket": ticket.key, "comment": text, "closed": closed,
                         "steps": steps}, audit_action="alert.ticket_resolved")
