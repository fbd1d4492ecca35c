"""``record(...)``: the one way every app writes the audit trail."""
from __future__ import annotations

from typing import Any

from apps.core import clock
from apps.core.fastpath import insert_rows

from .models import AuditEvent


def describe_actor(actor: Any) -> tuple[str, str, str]:
    """(type, id, label) for a user, a token principal, an ApiToken, a string, or None (system)."""
    if actor is None:
        return AuditEvent.ActorType.SYSTEM, "", "system"
    if isinstance(actor, str):
        return AuditEvent.ActorType.SYSTEM, "", actor
    token_id = getattr(actor, "token_id", None)
    if token_id is not None:  # apps.core.auth.TokenPrincipal
        return AuditEvent.ActorType.TOKEN, str(token_id), f"token:{actor.name}"
    if actor.__class__.__name__ == "ApiToken":
        return AuditEvent.ActorType.TOKEN, str(actor.pk), f"token:{actor.name}"
    if getattr(actor, "is_authenticated", False):
        return AuditEvent.ActorType.USER, str(actor.pk), actor.get_username()
    return AuditEvent.ActorType.SYSTEM, "", "anonymous"


def record(
    action: str,
    *,
    actor: Any = None,
    target: Any = None,
    target_type: str = "",
    target_id: str | int = "",
    tenant: Any = None,
    data: dict | None = None,
    ip: str | None = None,
) -> AuditEvent:
    """Append one audit event. ``target`` may be a model instance (type and id are derived).

    ``tenant`` may be a Tenant or its id. Runs inside the caller's transaction, so the audit row
    commits or rolls back with the change it describes.
    """
    if target is not None:
        target_type = f"{target._meta.app_label}.{target._meta.model_name}"
        target_id = target.pk
    actor_type, actor_id, actor_label = describe_actor(actor)
    tenant_id = getattr(tenant, "pk", tenant)
    return AuditEvent.objects.create(
        at=clock.now(),
        actor_type=actor_type,
        actor_id=actor_id,
        actor_label=actor_label[:200],
        action=action,
        target_type=target_type,
        target_id=str(target_id) if target_id != "" else "",
        tenant_id=tenant_id,
        data=data or {},
        ip=ip,
    )


def record_many(action: str, entries: list[dict], *, actor: Any = None) -> list[int]:
    """``record`` for many events of one action and actor in one INSERT (a batch of state changes).

    Each entry takes ``record``'s keywords: target_type, target_id, tenant (a Tenant or id), data, ip.
    Same transaction rule as ``record``.
    """
    if not entries:
        return []
    actor_type, actor_id, actor_label = describe_actor(actor)
    now = clock.now()
    return insert_rows(AuditEvent, ("at", "actor_type", "actor_id", "actor_label", "action", "target_type", "target_id",
                                    "tenant_id", "data", "ip"), [
        (now, actor_type, actor_id, actor_label[:200], action, e.get("target_type", ""), str(e.get("target_id", "")),
         getattr(e.get("tenant"), "pk", e.get("tenant")), e.get("data") or {}, e.get("ip"))
        for e in entries
    ])
