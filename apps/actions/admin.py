"""Admin for bridges and actions: secrets write-only (a password field that replaces the stored token),
URLs and templates checked by the same rules as the API, every save audited. Tickets and runs read-only."""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages

from apps.core.errors import ApplicationError

from . import config
from .models import ActionRun, RemediationAction, Ticket, TicketBridge


class _ServiceForm(forms.ModelForm):
    """Validates through ``apps.actions.config`` so the admin refuses what the API refuses."""

    secret = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                             help_text="Write-only: leave empty to keep the stored one")
    fields_for_service: tuple[str, ...] = ()

    def check(self, instance) -> None:
        raise NotImplementedError

    def _post_clean(self):
        super()._post_clean()
        if not self.errors:
            try:
                self.check(self.instance)
            except ApplicationError as exc:
                field = next(iter(exc.details), None) if isinstance(exc.details, dict) else None
                self.add_error(field if field in self.fields else None, exc.message)

    def service_data(self) -> dict:
        data = {f: self.cleaned_data[f] for f in self.fields_for_service if f in self.cleaned_data}
        if self.cleaned_data.get("secret"):
            data["secret"] = self.cleaned_data["secret"]
        return data


class BridgeForm(_ServiceForm):
    fields_for_service = config.BRIDGE_FIELDS

    def check(self, instance) -> None:
        config.check_bridge(instance, bool(self.cleaned_data.get("secret")))

    class Meta:
        model = TicketBridge
        exclude = ["secret_encrypted", "created_at", "updated_at"]


class ActionForm(_ServiceForm):
    fields_for_service = config.ACTION_FIELDS
    secret = None  # generated on creation, shown once

    def check(self, instance) -> None:
        config.check_action(instance)

    class Meta:
        model = RemediationAction
        exclude = ["secret_encrypted", "created_at", "updated_at"]


class _ServiceAdmin(admin.ModelAdmin):
    def save_model(self, request, obj, form, change):
        # The form ran the service's checks already (_post_clean): this save validates the same way.
        self.save_through_service(request, obj, form, change)

    def delete_model(self, request, obj):
        self.delete_through_service(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_through_service(request, obj)


@admin.register(TicketBridge)
class TicketBridgeAdmin(_ServiceAdmin):
    form = BridgeForm
    list_display = ("tenant", "kind", "base_url", "auto_create_severities", "close_on_resolve", "enabled")
    list_select_related = ("tenant",)
    autocomplete_fields = ("tenant",)

    def save_through_service(self, request, obj, form, change):
        data = form.service_data()
        saved = config.bridge_save(tenant=obj.tenant, actor=request.user, data=data,
                                   bridge=TicketBridge.objects.get(pk=obj.pk) if change else None)
        obj.pk = saved.pk

    def delete_through_service(self, request, obj):
        config.bridge_delete(bridge=obj, actor=request.user)


@admin.register(RemediationAction)
class RemediationActionAdmin(_ServiceAdmin):
    form = ActionForm
    list_display = ("name", "tenant", "url", "requires_confirmation", "auto_run_severities", "enabled")
    list_select_related = ("tenant",)
    list_filter = ("enabled",)
    autocomplete_fields = ("tenant",)

    def save_through_service(self, request, obj, form, change):
        saved, secret = config.action_save(tenant=obj.tenant, actor=request.user, data=form.service_data(),
                                           action=RemediationAction.objects.get(pk=obj.pk) if change else None)
        obj.pk = saved.pk
        if secret:
            self.message_user(request, f"Signing secret (shown once, copy it now): {secret}", level=messages.WARNING)

    def delete_through_service(self, request, obj):
        config.action_delete(action=obj, actor=request.user)


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Ticket)
class TicketAdmin(_ReadOnly):
    list_display = ("key", "alert", "state", "attempts", "last_error", "created_at")
    list_filter = ("state",)
    raw_id_fields = ("alert", "bridge")


@admin.register(ActionRun)
class ActionRunAdmin(_ReadOnly):
    list_display = ("action", "alert", "trigger", "status", "http_status", "latency_ms", "created_at")
    list_filter = ("status", "trigger")
    list_select_related = ("action",)
    raw_id_fields = ("alert", "action")
