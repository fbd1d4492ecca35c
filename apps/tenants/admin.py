"""Admin for tenants, plugins, memberships, fallback contacts, tokens, contact methods and on-call
rotations.

Changes to who may act for a tenant (memberships, token expiry) and where its alerts go (fallback
contacts) are audited like the API's changes: one ``apps.audit.services.record`` row per save or
delete, in the same transaction, naming the admin user and the changed fields.
"""
from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.utils.html import format_html_join

from apps.audit.services import record
from apps.core import clock
from apps.core.client_ip import client_ip

from .models import (
    ApiToken,
    ContactMethod,
    FallbackContact,
    OnCallRotation,
    Plugin,
    Tenant,
    TenantMembership,
)
from .oncall import current_shift, next_handoffs
from .tokens import issue_token, revoke_token


def _plain(value: Any) -> Any:
    """A JSON-safe form for the audit row: related objects by primary key, the rest as text."""
    value = getattr(value, "pk", value)
    return value if value is None or isinstance(value, (bool, int, float)) else str(value)


def form_changes(form: Any) -> dict[str, dict[str, Any]]:
    """``{field: {"from": old, "to": new}}`` for the fields the admin form changed."""
    return {name: {"from": _plain(form.initial.get(name)), "to": _plain(form.cleaned_data.get(name))}
            for name in form.changed_data}


def audit_admin(request: Any, action: str, obj: Any, data: dict) -> None:
    record(action, actor=request.user, target=obj, tenant=getattr(obj, "tenant_id", None), data=data,
           ip=client_ip(request) or None)


class AuditedAdmin(admin.ModelAdmin):
    """Saves and deletes write ``<audit_name>.created|updated|deleted`` audit rows."""

    audit_name = ""

    def describe(self, obj: Any) -> dict:
        return {}

    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            audit_admin(request, f"{self.audit_name}.{'updated' if change else 'created'}", obj,
                        {**self.describe(obj), "changes": form_changes(form)})

    def delete_model(self, request, obj):
        with transaction.atomic():
            audit_admin(request, f"{self.audit_name}.deleted", obj, self.describe(obj))
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for obj in queryset:
                audit_admin(request, f"{self.audit_name}.deleted", obj, self.describe(obj))
            super().delete_queryset(request, queryset)


def _describe_contact(contact: FallbackContact) -> dict:
    return {"kind": contact.kind, "value": contact.value, "active": contact.active}


class PluginInline(admin.TabularInline):
    model = Plugin
    extra = 0


class FallbackContactInline(admin.TabularInline):
    model = FallbackContact
    extra = 0


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "active", "is_platform", "created_at")
    list_filter = ("active", "is_platform")
    search_fields = ("slug", "name")
    inlines = [PluginInline, FallbackContactInline]

    def save_formset(self, request, form, formset, change):
        if formset.model is not FallbackContact:
            return super().save_formset(request, form, formset, change)
        with transaction.atomic():
            super().save_formset(request, form, formset, change)
            for contact in formset.new_objects:
                audit_admin(request, "fallback_contact.created", contact, _describe_contact(contact))
            for contact, fields in formset.changed_objects:
                audit_admin(request, "fallback_contact.updated", contact,
                            {**_describe_contact(contact), "changed": sorted(fields)})
            for contact in formset.deleted_objects:
                audit_admin(request, "fallback_contact.deleted", contact, _describe_contact(contact))


@admin.register(Plugin)
class PluginAdmin(admin.ModelAdmin):
    list_display = ("slug", "tenant", "name", "owner")
    list_select_related = ("tenant",)
    list_filter = ("tenant",)
    search_fields = ("slug", "name", "owner")
    autocomplete_fields = ("tenant",)


@admin.register(TenantMembership)
class TenantMembershipAdmin(AuditedAdmin):
    list_display = ("user", "tenant", "role")
    list_select_related = ("user", "tenant")
    list_filter = ("role", "tenant")
    autocomplete_fields = ("tenant",)
    raw_id_fields = ("user",)
    audit_name = "membership"

    def describe(self, obj: TenantMembership) -> dict:
        return {"user": obj.user.get_username(), "role": obj.role}


@admin.register(FallbackContact)
class FallbackContactAdmin(AuditedAdmin):
    list_display = ("tenant", "kind", "value", "active")
    list_select_related = ("tenant",)
    list_filter = ("kind", "active")
    autocomplete_fields = ("tenant",)
    audit_name = "fallback_contact"

    def describe(self, obj: FallbackContact) -> dict:
        return _describe_contact(obj)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are issued here with the plain value shown once in a message, never again."""

    list_display = ("name", "prefix", "tenant", "scopes", "created_at", "last_used_at", "revoked_at")
    list_select_related = ("tenant",)
    list_filter = ("tenant",)
    search_fields = ("name", "prefix")
    fields = ("name", "tenant", "scopes", "expires_at", "prefix", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke"]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:  # scopes and tenant are fixed once issued: issue a new token instead
            return self.readonly_fields + ("name", "tenant", "scopes")
        return self.readonly_fields

    def save_model(self, request, obj, form, change):
        if change:
            with transaction.atomic():
                super().save_model(request, obj, form, change)
                if form.changed_data:  # only expires_at is editable once issued
                    audit_admin(request, "token.updated", obj, {"name": obj.name, "changes": form_changes(form)})
            return
        with transaction.atomic():
            token, plain = issue_token(name=obj.name, scopes=obj.scopes, tenant=obj.tenant, actor=request.user)
            if obj.expires_at:
                ApiToken.objects.filter(pk=token.pk).update(expires_at=obj.expires_at)
                audit_admin(request, "token.updated", token, {
                    "name": obj.name, "changes": {"expires_at": {"from": None, "to": str(obj.expires_at)}}})
        obj.pk = token.pk
        obj._state.adding = False
        messages.warning(request, f"Token issued. Copy it now, it will not be shown again: {plain}")

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset):
        for token in queryset:
            revoke_token(token=token, actor=request.user)
        self.message_user(request, f"Revoked {queryset.count()} token(s).")

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead, so the audit trail keeps pointing at a row


@admin.register(ContactMethod)
class ContactMethodAdmin(AuditedAdmin):
    """A user's pager addresses; a change of where someone is woken up is audited like a contact."""

    list_display = ("user", "kind", "value", "verified", "position")
    list_select_related = ("user",)
    list_filter = ("kind", "verified")
    search_fields = ("user__username", "value")
    raw_id_fields = ("user",)
    audit_name = "contact_method"

    def describe(self, obj: ContactMethod) -> dict:
        return {"user": obj.user.get_username(), "kind": obj.kind, "value": obj.value, "verified": obj.verified}


def _usernames(ids: list[int]) -> dict[int, str]:
    from django.contrib.auth import get_user_model

    return dict(get_user_model().objects.filter(pk__in=ids).values_list("pk", "username"))


@admin.register(OnCallRotation)
class OnCallRotationAdmin(AuditedAdmin):
    list_display = ("name", "tenant", "period", "handoff_time", "timezone", "on_call_now")
    list_select_related = ("tenant",)
    list_filter = ("period", "tenant")
    search_fields = ("name",)
    autocomplete_fields = ("tenant",)
    readonly_fields = ("on_call_now", "upcoming_handoffs")
    audit_name = "oncall_rotation"

    def describe(self, obj: OnCallRotation) -> dict:
        return {"name": obj.name, "users": list(obj.users), "period": obj.period}

    @admin.display(description="On call now")
    def on_call_now(self, obj: OnCallRotation) -> str:
        if obj.pk is None or not obj.users:
            return "-"
        shift = current_shift(obj, clock.now())
        return f"{_usernames([shift.user_id]).get(shift.user_id, f'user {shift.user_id}')} (since {shift.starts_at:%Y-%m-%d %H:%M %Z})"

    @admin.display(description="Next hand-offs")
    def upcoming_handoffs(self, obj: OnCallRotation) -> str:
        if obj.pk is None or not obj.users:
            return "-"
        shifts = next_handoffs(obj, clock.now(), count=5)
        names = _usernames([s.user_id for s in shifts])
        return format_html_join("", "<div>{} from {}</div>", (
            (names.get(s.user_id, f"user {s.user_id}"), f"{s.starts_at:%Y-%m-%d %H:%M %Z}") for s in shifts))
