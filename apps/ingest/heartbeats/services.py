"""Heartbeat writes: a ping, a delete, and the sweep that turns missed heartbeats into alerts.

States: UP until ``next_due_at`` (last ping + timeout + grace) passes; the sweeper then claims the
row with a conditional UPDATE (UP and the ``next_due_at`` it read), sets it DOWN and raises one
alert through ``apps.alerts.external`` in the same transaction. A DOWN heartbeat is not looked at
again, so it raises nothing more until a ping turns it UP and resolves the alert. A ping that
races the sweep waits for the sweep's row lock and then takes the recovery path: the alert the
sweep raised is resolved, never left open.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from apps.alerts.external import fire_external, resolve_external
from apps.core import clock
from apps.core.errors import NotFound, Unprocessable
from apps.core.vocabulary import AlertSource, format_duration
from apps.tenants.models import Tenant

from .. import tenancy
from ..models import Heartbeat, HeartbeatState
from .params import PingSpec

log = logging.getLogger(__name__)

ACTOR = "heartbeat"
SOURCE = AlertSource.HEARTBEAT.value


@dataclass(frozen=True)
class PingResult:
    name: str
    state: str
    timeout_seconds: int
    grace_seconds: int
    severity: str
    last_seen_at: datetime
    next_due_at: datetime
    created: bool = False
    resolved_alert_id: int | None = None

    def as_dict(self) -> dict:
        return {"name": self.name, "state": self.state, "timeout_seconds": self.timeout_seconds,
                "grace_seconds": self.grace_seconds, "severity": self.severity,
                "last_seen_at": self.last_seen_at.isoformat(), "next_due_at": self.next_due_at.isoformat(),
                "created": self.created, "resolved_alert_id": self.resolved_alert_id}


def heartbeat_ping(*, tenant_id: int, name: str, spec: PingSpec) -> PingResult:
    """Record a ping of (tenant, ``name``): create the heartbeat on its first ping, recover a DOWN
    one (resolving its alert), else one UPDATE.

    Raises Unprocessable (422) past the tenant's HEARTBEAT_MAX_PER_TENANT or plugin limit;
    nothing is written then.
    """
    now = clock.now()
    with transaction.atomic():
        plugin_id = _plugin_id(tenant_id, spec.plugin)
        done = ping_up(tenant_id=tenant_id, name=name, now=now, timeout=spec.timeout, grace=spec.grace,
                       severity=spec.severity, plugin_id=plugin_id)
        if done is not None:
            return PingResult(name, HeartbeatState.UP, done.timeout_seconds, done.grace_seconds, done.severity,
                              now, done.next_due_at)
        return _create_or_recover(tenant_id, name, spec, plugin_id, now)


def _plugin_id(tenant_id: int, slug: str | None) -> int | None:
    if slug is None:
        return None
    refused = tenancy.admit_plugins([(tenant_id, slug)])
    if refused:
        limit = refused[(tenant_id, slug)]
        raise Unprocessable(f"plugin: the tenant has reached its limit of {limit.value} plugins ({limit.source}); "
                            f"new plugin {slug!r} refused", code="plugin_limit", details={"field": "plugin"})
    return tenancy.plugin_ids({(tenant_id, slug)})[(tenant_id, slug)]


def _create_or_recover(tenant_id: int, name: str, spec: PingSpec, plugin_id: int | None, now: datetime) -> PingResult:
    hb = Heartbeat.objects.select_for_update().filter(tenant_id=tenant_id, name=name).first()
    created = hb is None
    if created:
        # Counted under the tenant's row lock, so two first pings cannot overshoot the limit together.
        Tenant.objects.select_for_update(no_key=True).filter(pk=tenant_id).first()
        hb = Heartbeat.objects.select_for_update().filter(tenant_id=tenant_id, name=name).first()
        created = hb is None
    if created:
        count = Heartbeat.objects.filter(tenant_id=tenant_id).count()
        if count >= settings.HEARTBEAT_MAX_PER_TENANT:
            raise Unprocessable(
                f"heartbeat: the tenant has reached its limit of {settings.HEARTBEAT_MAX_PER_TENANT} heartbeats "
                f"(HEARTBEAT_MAX_PER_TENANT); new heartbeat {name!r} refused",
                code="heartbeat_limit", details={"field": "name", "limit": settings.HEARTBEAT_MAX_PER_TENANT})
        hb = Heartbeat(tenant_id=tenant_id, name=name, created_at=now, plugin_id=plugin_id,
                       timeout_seconds=spec.timeout or settings.HEARTBEAT_DEFAULT_TIMEOUT,
                       grace_seconds=settings.HEARTBEAT_DEFAULT_GRACE if spec.grace is None else spec.grace,
                       severity=spec.severity or "critical")
    else:
        hb.timeout_seconds = spec.timeout or hb.timeout_seconds
        hb.grace_seconds = hb.grace_seconds if spec.grace is None else spec.grace
        hb.severity = spec.severity or hb.severity
        hb.plugin_id = plugin_id or hb.plugin_id
    silent_for = now - hb.last_seen_at if hb.last_seen_at else None
    was_down = hb.state == HeartbeatState.DOWN
    hb.state = HeartbeatState.UP
    hb.last_seen_at = now
    hb.next_due_at = now + timedelta(seconds=hb.timeout_seconds + hb.grace_seconds)
    hb.save()
    resolved = None
    if was_down:
        seconds = int(silent_for.total_seconds())
        after = f"{seconds // 60} min" if seconds >= 60 else f"{seconds} s"
        alert = resolve_external(tenant_id=tenant_id, source=SOURCE, key=name, actor=ACTOR,
                                 note=f"heartbeat received again after {after}")
        resolved = alert.pk if alert else None
        log.info("heartbeat: up again", extra={"tenant_id": tenant_id, "heartbeat": name, "alert_id": resolved})
    return PingResult(hb.name, hb.state, hb.timeout_seconds, hb.grace_seconds, hb.severity, now, hb.next_due_at,
                      created=created, resolved_alert_id=resolved)


def heartbeat_delete(*, tenant_id: int, name: str) -> None:
    """Remove the heartbeat; its open alert (if DOWN) is resolved, since nothing will resolve it
    any more. NotFound (404) when the tenant has no heartbeat of that name."""
    with transaction.atomic():
        hb = Heartbeat.objects.select_for_update().filter(tenant_id=tenant_id, name=name).first()
        if hb is None:
            raise NotFound(f"heartbeat {name!r} not found", details={"name": name})
        if hb.state == HeartbeatState.DOWN:
            resolve_external(tenant_id=tenant_id, source=SOURCE, key=name, actor=ACTOR,
                             note=f"heartbeat {name} deleted")
        hb.delete()


def sweep_missed(*, limit: int = 500) -> int:
    """Turn every UP heartbeat past its ``next_due_at`` DOWN and raise its alert; returns how many.

    Safe to run concurrently (claim per heartbeat); one heartbeat's failure is logged and does not
    stop the others (its claim rolls back, so the next sweep tries it again).
    """
    now = clock.now()
    due = list(Heartbeat.objects.filter(state=HeartbeatState.UP, next_due_at__lte=now)
               .order_by("next_due_at").values_list("pk", "next_due_at")[:limit])
    raised = 0
    for pk, due_at in due:
        try:
            raised += _miss(pk, due_at, now)
        except Exception:
            log.exception("heartbeat: raising the missed alert failed", extra={"heartbeat_id": pk})
    return raised


def _miss(pk: int, due_at: datetime, now: datetime) -> bool:
    with transaction.atomic():
        if not Heartbeat.objects.filter(pk=pk, state=HeartbeatState.UP, next_due_at=due_at).update(
                state=HeartbeatState.DOWN):
            return False  # pinged, deleted or claimed by another sweep since we read it
        hb = Heartbeat.objects.select_related("tenant", "plugin").get(pk=pk)
        timeout, grace = format_duration(hb.timeout_seconds), format_duration(hb.grace_seconds)
        last_seen = hb.last_seen_at.isoformat(timespec="seconds")
        result = fire_external(
            tenant=hb.tenant, plugin=hb.plugin, source=SOURCE, key=hb.name, severity=hb.severity,
            title=f"Heartbeat {hb.name} missed",
            summary=f"No heartbeat from {hb.name} since {last_seen} (timeout {timeout}, grace {grace}).",
            labels={"heartbeat": hb.name}, annotations={"last_seen": last_seen, "timeout": timeout, "grace": grace},
            started_at=due_at, seen_at=now, received_at=now)
        Heartbeat.objects.filter(pk=pk).update(alert=result.alert)
    log.warning("heartbeat: missed", extra={"tenant_id": hb.tenant_id, "heartbeat": hb.name,
                                            "alert_id": result.alert.pk})
    return True

@dataclass(frozen=True)
class Pinged:
    id: int
    timeout_seconds: int
    grace_seconds: int
    severity: str
    next_due_at: datetime


def ping_up(*, tenant_id: int, name: str, now: datetime, timeout: int | None, grace: int | None,
            severity: str | None, plugin_id: int | None) -> Pinged | None:
    """The ping's common case: the UP heartbeat (tenant, name) moves its last-seen and due times (and
    any setting the ping names) under its row lock; None when there is no UP one (the caller's slow
    path creates or recovers those). Plain ORM: a ping is rare per heartbeat, so no raw SQL is kept."""
    hb = (Heartbeat.objects.select_for_update()
          .filter(tenant_id=tenant_id, name=name, state=HeartbeatState.UP).first())
    if hb is None:
        return None
    hb.timeout_seconds = timeout if timeout is not None else hb.timeout_seconds
    hb.grace_seconds = grace if grace is not None else hb.grace_seconds
    hb.severity = severity or hb.severity
    hb.plugin_id = plugin_id or hb.plugin_id
    hb.last_seen_at = now
    hb.next_due_at = now + timedelta(seconds=hb.timeout_seconds + hb.grace_seconds)
    hb.save(update_fields=["timeout_seconds", "grace_seconds", "severity", "plugin_id", "last_seen_at",
                           "next_due_at"])
    return Pinged(hb.pk, hb.timeout_seconds, hb.grace_seconds, hb.severity, hb.next_due_at)
