"""Remediation runs: a signed POST of the action's rendered body to the tenant's runbook endpoint.

Signed like our webhooks (Standard Webhooks ``webhook-id``/``-timestamp``/``-signature`` plus
``X-PowerX-*``) with the action's own secret; ``webhook-id`` is ``run_<id>``, so a receiver can
dedupe. The run row is written before the call and finished after it, with the result (HTTP status,
latency, a truncated response excerpt, error) in the same transaction as the alert's timeline line
and the audit row. Automatic runs are claimed by inserting their row (one per action and alert) while
the action row is locked, so two sweeps neither run twice nor overshoot ``max_runs_per_hour``.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from apps.alerts.history import actor_label, log_change
from apps.alerts.models import ACTIVE_STATES, Alert, TimelineEntry
from apps.alerts.payload import alert_payload
from apps.alerts.selectors import tenants_with_alerts_since
from apps.core import clock
from apps.core.errors import Conflict, Unprocessable
from apps.delivery.signing import sign

from . import outbound
from .models import ActionRun, RemediationAction
from .secrets import unseal
from .templating import render_json

NOTE = TimelineEntry.Kind.NOTE  # the alerts app has no action kind; data["event"] tells them apart


def _load_alert(alert_id: int) -> Alert:
    return Alert.objects.select_related("tenant", "plugin", "assignee").get(pk=alert_id)


def check_runnable(action: RemediationAction, alert: Alert, *, confirm: bool) -> None:
    """Conflict (409) for a disabled action or a missing confirmation, Unprocessable (422) for a
    severity the action does not allow."""
    if not action.enabled:
        raise Conflict(f"action {action.name!r} is disabled", details={"action": ["disabled"]})
    if action.allowed_severities and alert.severity not in action.allowed_severities:
        raise Unprocessable(f"action {action.name!r} is not allowed for {alert.severity} alerts "
                            f"(allowed: {', '.join(action.allowed_severities)})",
                            details={"severity": [alert.severity], "allowed_severities": action.allowed_severities})
    if action.requires_confirmation and not confirm:
        raise Conflict(f"action {action.name!r} requires confirmation: send {{\"confirm\": true}}",
                       code="confirmation_required", details={"confirm": ["required"]})


def action_run(*, action: RemediationAction, alert: Alert, actor: Any, confirm: bool = False) -> ActionRun:
    """Run ``action`` on ``alert`` now for an operator (same tenant: the caller scoped both).

    Raises as ``check_runnable``; otherwise returns the finished run, SUCCEEDED (2xx) or FAILED.
    """
    if action.tenant_id != alert.tenant_id:
        raise Unprocessable("the action belongs to another tenant than the alert")
    check_runnable(action, alert, confirm=confirm)
    run = ActionRun.objects.create(action=action, alert=alert, trigger=ActionRun.Trigger.MANUAL,
                                   actor_label=actor_label(actor), created_at=clock.now())
    return _execute(run, action, actor)


def _execute(run: ActionRun, action: RemediationAction, actor: Any) -> ActionRun:
    alert = _load_alert(run.alert_id)
    http_status = latency = None
    body_excerpt = error = ""
    try:
        context = {"alert": alert_payload(alert), "action": {"name": action.name},
                   "run": {"id": run.pk, "trigger": run.trigger}}
        body = render_json(action.body_template, context, field="body_template")
        headers = sign(body=body, msg_id=f"run_{run.pk}", timestamp=int(clock.now().timestamp()),
                       secrets=[unseal(action.secret_encrypted)])
        result = outbound.post(action.url, body=body, headers={**headers, "X-PowerX-Alert-ID": str(alert.pk)})
        http_status, latency, body_excerpt = result.status, result.latency_ms, result.excerpt
        if not result.ok:
            error = f"HTTP {result.status}"
    except outbound.CallFailed as exc:
        latency, error = exc.latency_ms, exc.message
    except Exception as exc:  # noqa: BLE001 - template, secret or signing trouble: recorded on the run
        error = f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"[:1000]
    status = ActionRun.Status.FAILED if error else ActionRun.Status.SUCCEEDED
    outcome = f"HTTP {http_status}" if http_status else "no response"
    message = f"Action {action.name}: {outcome}" + (f" in {latency} ms" if latency is not None else "")
    if error and not http_status:
        message += f": {error}"
    with transaction.atomic():
        ActionRun.objects.filter(pk=run.pk).update(status=status, http_status=http_status, latency_ms=latency,
                                                   response_excerpt=body_excerpt, error=error, finished_at=clock.now())
        log_change(alert, kind=NOTE, actor=actor, message=message,
                   data={"event": "action.run", "action": action.name, "run": run.pk, "trigger": run.trigger,
                         "status": status, "http_status": http_status, "latency_ms": latency,
                         "response_excerpt": body_excerpt, "error": error},
                   audit_action="alert.action_run")
    run.refresh_from_db()
    return run


def _claim_auto(action_id: int, alert: Alert) -> ActionRun | None:
    """Insert this alert's automatic run of the action: RUNNING, or SKIPPED past the hourly limit.
    None when another sweep already claimed it."""
    now = clock.now()
    try:
        with transaction.atomic():
            action = RemediationAction.objects.select_for_update().get(pk=action_id)
            recent = ActionRun.objects.filter(action=action, trigger=ActionRun.Trigger.AUTO,
                                              created_at__gt=now - timedelta(hours=1)).exclude(
                status=ActionRun.Status.SKIPPED).count()
            over = recent >= action.max_runs_per_hour
            error = f"rate limit: {recent} automatic runs in the last hour (max {action.max_runs_per_hour})" if over else ""
            run = ActionRun.objects.create(
                action=action, alert=alert, trigger=ActionRun.Trigger.AUTO, actor_label="system", created_at=now,
                status=ActionRun.Status.SKIPPED if over else ActionRun.Status.RUNNING, error=error,
                finished_at=now if over else None)
            if over:
                log_change(alert, kind=NOTE, actor=None, message=f"Action {action.name} skipped: {error}",
                           data={"event": "action.skipped", "action": action.name, "run": run.pk, "reason": error},
                           audit_action="alert.action_skipped")
            return run
    except IntegrityError:
        return None


def auto_run_due(*, limit: int = 100) -> int:
    """The sweep: run each action with ``auto_run_severities`` once on every new alert of those
    severities (skipped past the hourly limit, with the reason). Returns how many runs it made."""
    now = clock.now()
    lookback = now - timedelta(seconds=settings.ACTIONS_SWEEP_LOOKBACK_SECONDS)
    done = 0
    actions = list(RemediationAction.objects.filter(enabled=True).exclude(auto_run_severities=[]))
    active = tenants_with_alerts_since({a.tenant_id for a in actions}, lookback)
    for action in actions:
        if action.tenant_id not in active:
            continue  # no alert of its tenant in the lookback: nothing to run on
        since = max(lookback, action.created_at)
        fresh = (Alert.objects.filter(tenant_id=action.tenant_id, severity__in=action.auto_run_severities,
                                      state__in=ACTIVE_STATES, created_at__gte=since)
                 .exclude(pk__in=ActionRun.objects.filter(action=action, trigger=ActionRun.Trigger.AUTO)
                          .values("alert_id"))
                 .order_by("created_at").values_list("pk", flat=True)[:limit])
        for alert_id in fresh:
            run = _claim_auto(action.pk, _load_alert(alert_id))
            if run is None:
                continue
            done += 1
            if run.status == ActionRun.Status.RUNNING:
                _execute(run, action, None)
    return done
