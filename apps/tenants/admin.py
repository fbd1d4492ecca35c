from django.contrib import admin, messages

from .models import ApiToken, FallbackContact, Plugin, Tenant, TenantMembership
from .tokens import issue_token, revoke_token


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


@admin.register(Plugin)
class PluginAdmin(admin.ModelAdmin):
    list_display = ("slug", "tenant", "name", "owner")
    list_select_related = ("tenant",)
    list_filter = ("tenant",)
    search_fields = ("slug", "name", "owner")
    autocomplete_fields = ("tenant",)


@admin.register(TenantMembership)
class TenantMembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "tenant", "role")
    list_select_related = ("user", "tenant")
    list_filter = ("role", "tenant")
    autocomplete_fields = ("tenant",)
    raw_id_fields = ("user",)


@admin.register(FallbackContact)
class FallbackContactAdmin(admin.ModelAdmin):
    list_display = ("tenant", "kind", "value", "active")
    list_select_related = ("tenant",)
    list_filter = ("kind", "active")
    autocomplete_fields = ("tenant",)


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
            return super().save_model(request, obj, form, change)
        token, plain = issue_token(name=obj.name, scopes=obj.scopes, tenant=obj.tenant, actor=request.user)
        if obj.expires_at:
            ApiToken.objects.filter(pk=token.pk).update(expires_at=obj.expires_at)
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
