"""Whom an escalation step pages: the users of a rotation, a tenant role or a staff group, and
their verified contact methods. Reads only; the escalation service writes the deliveries."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from .models import ContactMethod, OnCallRotation, TenantMembership
from .oncall import on_call

ROLES = tuple(TenantMembership.Role.values)


@dataclass
class Pagee:
    user_id: int
    username: str
    addresses: dict[str, list[str]] = field(default_factory=dict)  # kind -> verified values, in position order


def rotation_names(tenant_id: int) -> set[str]:
    return set(OnCallRotation.objects.filter(tenant_id=tenant_id).values_list("name", flat=True))


def users_to_page(*, tenant_id: int, group: str = "", oncall: str = "", at: datetime) -> list[int]:
    """User ids a step pages, in order: the on-call user of rotation ``oncall`` (of this tenant),
    else the members of ``group``: a tenant role (``admin``, ``operator``, ``viewer``: the tenant's
    members with that role) or a Django group (its active members, e.g. the staff ``operators``).
    A rotation that no longer exists or an unknown group pages nobody (the caller says so)."""
    if oncall:
        rotation = OnCallRotation.objects.filter(tenant_id=tenant_id, name=oncall).first()
        return [on_call(rotation, at)] if rotation is not None and rotation.users else []
    if not group:
        return []
    if group in ROLES:
        qs = TenantMembership.objects.filter(tenant_id=tenant_id, role=group, user__is_active=True)
        return list(qs.order_by("user_id").values_list("user_id", flat=True))
    found = Group.objects.filter(name=group).first()
    if found is None:
        return []
    return list(found.user_set.filter(is_active=True).order_by("pk").values_list("pk", flat=True))


def pagees(user_ids: Sequence[int], kinds: Iterable[str]) -> list[Pagee]:
    """The users (active ones, in the given order) with their verified addresses of ``kinds``."""
    users = {u.pk: u for u in get_user_model().objects.filter(pk__in=list(user_ids), is_active=True)}
    out = {uid: Pagee(uid, users[uid].get_username()) for uid in dict.fromkeys(user_ids) if uid in users}
    methods = ContactMethod.objects.filter(user_id__in=list(out), kind__in=list(kinds), verified=True)
    for m in methods.order_by("user_id", "position", "id"):
        out[m.user_id].addresses.setdefault(m.kind, []).append(m.value)
    return list(out.values())
