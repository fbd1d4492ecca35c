"""Escalation: unacknowledged alerts climb their policy's steps.

An alert carries ``next_escalation_at`` (set when it opens, cleared by ack/resolve/suppress).
The sweeper (task ``alerts.escalate``, every 30 s) claims each due alert with a conditional UPDATE
on its current escalation_level, so two sweeps running at once escalate it once, not twice.
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import transaction

from apps.core import clock
from apps.core.vocabulary import EVENT_ESCALATED
from apps.core.errors import Conflict, NotFound
from apps.delivery import outbox
from apps.tenants import paging

from .history import emit, log_change
from .matching import CHANNELS as BUILTIN_CHANNELS, escalation_step, next_escalation_time
from .models import Alert, AlertState, TimelineEntry, UNACKNOWLEDGED_STATES
from .payload import notification_for
from .policies import policy_for
from .silences import active_silences, silence_for_alert

log = logging.getLogger(__name__)

MANUAL_FROM = (AlertState.OPEN, AlertState.ACKNOWLEDGED, AlertState.ESCALATED)
# What a manual escalation notifies when the policy has no step left (or none at all).
MANUAL_STEP = {"after_minutes": 0, "channels": ["webhook"], "group": "operators"}
PAGE_KINDS = ("email", "sms")  # in a step's channels: the paged users' contact methods of that kind


def alert_escalate(*, alert_id: int, actor: Any = None, expected_level: int | None = None) -> Alert:
    """Raise escalation_level by one, state ESCALATED, and send alert.escalated.

    Manual (``expected_level`` None, e.g. an operator asking for help): from OPEN, ACKNOWLEDGED or
    ESCALATED; Conflict otherwise. Sweeper (``expected_level`` = the level it read): only from an
    unacknowledged state, only if still due and still at that level; Conflict means someone else
    escalated, acknowledged or resolved it first and the caller should move on.
    """
    now = clock.now()
    with transaction.atomic():
        alert = Alert.objects.select_related("tenant", "plugin").filter(pk=alert_id).first()
        if alert is None:
            raise NotFound(f"alert {alert_id} not found")
        level = alert.escalation_level if expected_level is None else expected_level
        steps, repeat = policy_for(tenant_id=alert.tenant_id, plugin_id=alert.plugin_id, severity=alert.severity)
        step = escalation_step(steps, repeat, level) or (MANUAL_STEP if expected_level is None else None)
        guard: dict = {"pk": alert_id, "escalation_level": level}
        if expected_level is None:
            guard["state__in"] = MANUAL_FROM
        else:
            guard.update(state__in=UNACKNOWLEDGED_STATES, next_escalation_at__lte=now)
        if step is None:
            # Policy changed since the alert was scheduled and has no step left: stop looking at it.
            Alert.objects.filter(**guard).update(next_escalation_at=None)
            raise Conflict(f"alert {alert_id} has no escalation step left",
                           details={"alert_id": alert_id, "state": alert.state, "action": "escalate"})
        changed = Alert.objects.filter(**guard).update(
            escalation_level=level + 1, state=AlertState.ESCALATED, last_escalated_at=now, updated_at=now,
            next_escalation_at=next_escalation_time(steps, repeat, level + 1, now),
        )
        if not changed:
            current = Alert.objects.filter(pk=alert_id).values_list("state", "escalation_level").first()
            raise Conflict(f"alert {alert_id} is {current[0]}; cannot escalate",
                           details={"alert_id": alert_id, "state": current[0], "escalation_level": current[1],
                                    "action": "escalate"})
        alert.refresh_from_db()
        data = {"escalation_level": alert.escalation_level, "channels": list(step.get("channels", [])),
                "group": step.get("group", "")}
        log_change(alert, kind=TimelineEntry.Kind.ESCALATED, actor=actor,
                   message=f"escalated to level {alert.escalation_level}", data=data, audit_action="alert.escalated")
        emit(alert, EVENT_ESCALATED, data)
        if alert.silence_id is None:  # like emit: an alert nobody has heard of pages nobody either
            page_step(alert, step, data, now=now, actor=actor)
    return alert


def page_step(alert: Alert, step: dict, data: dict, *, now: datetime, actor: Any = None) -> None:
    """Send what ``step`` names beyond the routed alert.escalated: its tenant channels by name, and
    the users of its rotation (``oncall``: whoever is on call ``now``) or group through their
    verified contact methods of the step's kinds (``email``/``sms`` in channels). Writes the
    deliveries and one timeline line ("paged alice by email, sms; notified pagerduty-primary") in the
    caller's transaction; a step that reaches nobody says so in the timeline instead."""
    kinds = [k for k in PAGE_KINDS if k in step.get("channels", ())]
    named = [c for c in step.get("channels", ()) if c not in BUILTIN_CHANNELS]
    who = ""
    pagees: list[paging.Pagee] = []
    if kinds and (step.get("oncall") or step.get("group")):
        who = f"on call in {step['oncall']}" if step.get("oncall") else f"group {step['group']}"
        user_ids = paging.users_to_page(tenant_id=alert.tenant_id, group=step.get("group", ""),
                                        oncall=step.get("oncall", ""), at=now)
        pagees = paging.pagees(user_ids, kinds)
    if not named and not who:
        return
    emails = [a for p in pagees for a in p.addresses.get("email", [])]
    phones = [a for p in pagees for a in p.addresses.get("sms", [])]
    reason = (f"you are {who} for {alert.tenant.slug} and alert {alert.pk} is unacknowledged "
              f"(escalation level {alert.escalation_level})")
    rows = outbox.page(notification=notification_for(alert, EVENT_ESCALATED, data), emails=emails, phones=phones,
                       channels=named, reason=reason)
    parts = [f"paged {p.username} by {', '.join(k for k in kinds if p.addresses.get(k))}"
             for p in pagees if p.addresses]
    unreachable = [p.username for p in pagees if not p.addresses]
    if unreachable:
        parts.append(f"no verified {'/'.join(kinds)} contact for {', '.join(unreachable)}")
    if who and not pagees:
        parts.append(f"nobody to page ({who})")
    notified = sorted({r.notification_channel.name for r in rows if r.notification_channel_id})
    if notified:
        parts.append(f"notified {', '.join(notified)}")
    log_change(alert, kind=TimelineEntry.Kind.DELIVERY, actor=actor, message="; ".join(parts), data={
        "escalation_level": alert.escalation_level, "paged": {p.username: sorted(p.addresses) for p in pagees},
        "unreachable": unreachable, "channels": notified, "delivery_ids": [r.pk for r in rows]})


def escalate_due(*, limit: int = 500) -> int:
    """Escalate every alert whose next_escalation_at has passed; returns how many escalated.

    Alerts an active silence covers are not escalated; their next look is pushed to the
    silence's end. Safe to run concurrently (claim by conditional UPDATE per alert).
    """
    now = clock.now()
    due = list(Alert.objects.filter(state__in=UNACKNOWLEDGED_STATES, next_escalation_at__lte=now)
               .select_related("plugin").order_by("next_escalation_at")[:limit])
    if not due:
        return 0
    silences = list(active_silences(at=now))
    done = 0
    for alert in due:
        silence = silence_for_alert(alert, silences) if silences else None
        if silence is not None:
            Alert.objects.filter(pk=alert.pk, escalation_level=alert.escalation_level,
                                 state__in=UNACKNOWLEDGED_STATES).update(next_escalation_at=silence.ends_at)
            continue
        try:
            alert_escalate(alert_id=alert.pk, actor=None, expected_level=alert.escalation_level)
            done += 1
        except (Conflict, NotFound):
            continue
        except Exception:  # one broken alert must not stop the others from escalating
            log.exception("escalation failed", extra={"alert_id": alert.pk, "tenant_id": alert.tenant_id})
    return done
