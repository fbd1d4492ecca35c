"""Escalation: unacknowledged alerts climb their policy's steps.

An alert carries ``next_escalation_at`` (set when it opens, cleared by ack/resolve/suppress).
The sweeper (task ``alerts.escalate``, every 30 s) claims each due alert with a conditional UPDATE
on its current escalation_level, so two sweeps running at once escalate it once, not twice.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q

from apps.core import clock
from apps.core.errors import Conflict, NotFound
from apps.core.vocabulary import EVENT_ESCALATED
from apps.delivery import outbox
from apps.tenants import paging

from .history import emit, log_change
from .matching import CHANNELS as BUILTIN_CHANNELS
from .matching import escalation_step, next_escalation_time
from .models import UNACKNOWLEDGED_STATES, Alert, AlertState, TimelineEntry
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
        # Like emit: an alert nobody has heard of (born silenced) pages nobody either.
        plan = page_plan(alert, step, now) if alert.silence_id is None else None
        message = f"escalated to level {alert.escalation_level}"
        if plan and plan.summary:
            message += f"; {plan.summary}"
        log_change(alert, kind=TimelineEntry.Kind.ESCALATED, actor=actor, message=message,
                   data={**data, **plan.record} if plan else data, audit_action="alert.escalated")
        emit(alert, EVENT_ESCALATED, data)
        if plan:
            plan.send(alert, data)
    return alert


@dataclass
class PagePlan:
    """What one step pages beyond the routed alert.escalated: people (through contact methods of
    ``kinds``) and the tenant channels it names."""

    kinds: list[str]
    who: str  # "on call in primary" / "group operators" / "" (no people)
    pagees: list[paging.Pagee]
    channels: list[str]

    @property
    def summary(self) -> str:
        """The timeline's words: "paged alice by email, sms; notified pagerduty-primary"."""
        parts = [f"paged {p.username} by {', '.join(k for k in self.kinds if p.addresses.get(k))}"
                 for p in self.pagees if p.addresses]
        unreachable = [p.username for p in self.pagees if not p.addresses]
        if unreachable:
            parts.append(f"no verified {'/'.join(self.kinds)} contact for {', '.join(unreachable)}")
        if self.who and not self.pagees:
            parts.append(f"nobody to page ({self.who})")
        if self.channels:
            parts.append(f"notified {', '.join(self.channels)}")
        return "; ".join(parts)

    @property
    def record(self) -> dict:
        return {"paged": {p.username: sorted(p.addresses) for p in self.pagees if p.addresses},
                "unreachable": [p.username for p in self.pagees if not p.addresses], "notified": self.channels}

    def send(self, alert: Alert, data: dict) -> None:
        """Write the deliveries (in the caller's transaction, after the routed notification, so a
        channel the policies already reached is not sent the same escalation twice)."""
        emails = [a for p in self.pagees for a in p.addresses.get("email", [])]
        phones = [a for p in self.pagees for a in p.addresses.get("sms", [])]
        if not (emails or phones or self.channels):
            return
        reason = (f"you are {self.who} for {alert.tenant.slug} and alert {alert.pk} is unacknowledged "
                  f"(escalation level {alert.escalation_level})")
        outbox.page(notification=notification_for(alert, EVENT_ESCALATED, data), emails=emails, phones=phones,
                    channels=self.channels, reason=reason)


def page_plan(alert: Alert, step: dict, now: datetime) -> PagePlan | None:
    """Whom ``step`` pages ``now``: its rotation's on-call user (``oncall``) or its group's users, by
    the contact kinds among its channels (``email``/``sms``), and the tenant channels it names.
    None when the step pages nobody and names no channel (e.g. ``["webhook"]`` only)."""
    channels = list(step.get("channels", ()))
    kinds = [k for k in PAGE_KINDS if k in channels]
    named = [c for c in channels if c not in BUILTIN_CHANNELS]
    who, pagees = "", []
    if kinds and (step.get("oncall") or step.get("group")):
        who = f"on call in {step['oncall']}" if step.get("oncall") else f"group {step['group']}"
        user_ids = paging.users_to_page(tenant_id=alert.tenant_id, group=step.get("group", ""),
                                        oncall=step.get("oncall", ""), at=now)
        pagees = paging.pagees(user_ids, kinds)
    if not who and not named:
        return None
    return PagePlan(kinds, who, pagees, named)


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
    # Only the silences of the due alerts' tenants (and the all-tenant ones), grouped per tenant:
    # not every tenant's silences scanned for each alert.
    tenant_ids = sorted({a.tenant_id for a in due})
    found = list(active_silences(at=now).filter(Q(tenant_id__in=tenant_ids) | Q(tenant__isnull=True)))
    silences = {t: [s for s in found if s.tenant_id in (None, t)] for t in tenant_ids}
    done = 0
    for alert in due:
        mine = silences[alert.tenant_id]
        silence = silence_for_alert(alert, mine) if mine else None
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
