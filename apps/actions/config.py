"""Write side of ticket bridges and remediation actions (API and admin): validate, seal secrets,
save, audit in the same transaction. Every refusal is a 422 naming the field; URLs pass the SSRF
guard here and again at every call. Secrets are write-only: nothing returns them after creation,
except an action's generated signing secret, shown once by its creator.
"""
from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from apps.audit.services import record
from apps.core import clock
from apps.core.errors import Conflict, Unprocessable
from apps.core.vocabulary import SEVERITIES
from apps.delivery.signing import new_secret

from . import outbound
from .models import RemediationAction, TicketBridge
from .secrets import seal
from .templating import check_json_template, render_text

BRIDGE_FIELDS = ("kind", "base_url", "auth", "username", "project_key", "issue_type", "priorities", "labels",
                 "transition_id", "body_template", "key_path", "url_path", "comment_url_template",
                 "auto_create_severities", "close_on_resolve", "enabled")
ACTION_FIELDS = ("name", "description", "url", "body_template", "allowed_severities", "requires_confirmation",
                 "enabled", "auto_run_severities", "max_runs_per_hour")
DEFAULT_ACTION_BODY = '{"action": {{ action.name|tojson }}, "alert": {{ alert|tojson }}}'


def clean_severities(value: Any, field: str) -> list[str]:
    if not isinstance(value, list) or any(v not in SEVERITIES for v in value):
        raise Unprocessable(f"{field}: give a list of severities out of {', '.join(SEVERITIES)}",
                            details={field: [f"known: {', '.join(SEVERITIES)}"]})
    return sorted(set(value), key=SEVERITIES.index)


def _require(condition: bool, field: str, message: str) -> None:
    if not condition:
        raise Unprocessable(f"{field}: {message}", details={field: [message]})


def check_bridge(bridge: TicketBridge, secret_given: bool) -> None:
    _require(bridge.kind in TicketBridge.Kind.values, "kind", f"one of {', '.join(TicketBridge.Kind.values)}")
    _require(bridge.auth in TicketBridge.Auth.values, "auth", f"one of {', '.join(TicketBridge.Auth.values)}")
    bridge.base_url = outbound.validate_url(bridge.base_url, field="base_url")
    bridge.auto_create_severities = clean_severities(bridge.auto_create_severities, "auto_create_severities")
    if bridge.auth != TicketBridge.Auth.NONE:
        _require(secret_given or bool(bridge.secret_encrypted), "secret", f"{bridge.auth} auth needs a token")
    if bridge.auth == TicketBridge.Auth.BASIC:
        _require(bool(bridge.username), "username", "basic auth needs the account (email)")
    _require(isinstance(bridge.priorities, dict) and all(k in SEVERITIES and isinstance(v, str)
                                                          for k, v in bridge.priorities.items()),
             "priorities", "a map of severity -> priority name")
    _require(isinstance(bridge.labels, list) and all(isinstance(v, str) for v in bridge.labels), "labels",
             "a list of strings")
    if bridge.kind == TicketBridge.Kind.JIRA:
        _require(bool(bridge.project_key), "project_key", "a Jira bridge needs the project key")
        if bridge.close_on_resolve:
            _require(bool(bridge.transition_id), "transition_id", "close_on_resolve on Jira needs the transition id")
    else:
        _require(bool(bridge.body_template), "body_template", "a generic bridge needs a body template")
        check_json_template(bridge.body_template, field="body_template")
        if bridge.comment_url_template:
            url = render_text(bridge.comment_url_template, {"key": "KEY-1"}, field="comment_url_template").strip()
            outbound.validate_url(url, field="comment_url_template")


def bridge_save(*, tenant: Any, actor: Any, data: dict, bridge: TicketBridge | None = None) -> TicketBridge:
    """Create (``bridge`` None) or update the tenant's bridge; ``data["secret"]`` replaces the token."""
    creating = bridge is None
    now = clock.now()
    if creating:
        if TicketBridge.objects.filter(tenant=tenant).exists():
            raise Conflict(f"tenant {tenant.slug!r} already has a ticket bridge; change it instead",
                           details={"tenant": ["has a bridge"]})
        bridge = TicketBridge(tenant=tenant, created_at=now)
    for field in BRIDGE_FIELDS:
        if field in data:
            setattr(bridge, field, data[field])
    secret = data.get("secret")
    check_bridge(bridge, bool(secret))
    if secret:
        bridge.secret_encrypted = seal(secret)
    bridge.updated_at = now
    changed = sorted(set(data) & set(BRIDGE_FIELDS)) + (["secret"] if secret else [])
    try:
        with transaction.atomic():
            bridge.save()
            record("ticket_bridge.created" if creating else "ticket_bridge.updated", actor=actor, target=bridge,
                   tenant=bridge.tenant_id, data={"kind": bridge.kind, "base_url": bridge.base_url, "fields": changed})
    except IntegrityError:
        raise Conflict(f"tenant {tenant.slug!r} already has a ticket bridge", details={"tenant": ["has a bridge"]}) from None
    return bridge


def bridge_delete(*, bridge: TicketBridge, actor: Any) -> None:
    with transaction.atomic():
        record("ticket_bridge.deleted", actor=actor, target=bridge, tenant=bridge.tenant_id,
               data={"kind": bridge.kind, "base_url": bridge.base_url})
        bridge.delete()


def check_action(action: RemediationAction) -> None:
    _require(bool(action.name), "name", "required")
    action.url = outbound.validate_url(action.url, field="url")
    action.allowed_severities = clean_severities(action.allowed_severities, "allowed_severities")
    action.auto_run_severities = clean_severities(action.auto_run_severities, "auto_run_severities")
    _require(isinstance(action.max_runs_per_hour, int) and action.max_runs_per_hour >= 0, "max_runs_per_hour",
             "a whole number >= 0")
    if action.allowed_severities:
        outside = [s for s in action.auto_run_severities if s not in action.allowed_severities]
        _require(not outside, "auto_run_severities", f"{', '.join(outside)} not in allowed_severities")
    check_json_template(action.body_template, field="body_template",
                        extra={"action": {"name": action.name}, "run": {"id": 1, "trigger": "manual"}})


def action_save(*, tenant: Any, actor: Any, data: dict,
                action: RemediationAction | None = None) -> tuple[RemediationAction, str | None]:
    """Create or update an action; returns it and, on creation, its new ``whsec_`` secret (shown once)."""
    creating = action is None
    now = clock.now()
    secret = None
    if creating:
        secret = new_secret()
        action = RemediationAction(tenant=tenant, created_at=now, secret_encrypted=seal(secret),
                                   body_template=DEFAULT_ACTION_BODY)
    for field in ACTION_FIELDS:
        if field in data:
            setattr(action, field, data[field])
    check_action(action)
    action.updated_at = now
    try:
        with transaction.atomic():
            action.save()
            record("action.created" if creating else "action.updated", actor=actor, target=action,
                   tenant=action.tenant_id, data={"name": action.name, "url": action.url,
                                                  "fields": sorted(set(data) & set(ACTION_FIELDS))})
    except IntegrityError:
        raise Conflict(f"an action named {action.name!r} already exists", details={"name": ["taken"]}) from None
    return action, secret


def action_delete(*, action: RemediationAction, actor: Any) -> None:
    with transaction.atomic():
        record("action.deleted", actor=actor, target=action, tenant=action.tenant_id, data={"name": action.name})
        action.delete()
