"""Admin for integration secrets (Grafana's HMAC): write-only secret, every change audited
through ``integrations.secrets`` (the one writer)."""
from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages

from apps.delivery import crypto

from .integrations.secrets import DEFAULT_HEADER, delete_secret, set_secret
from .models import IntegrationSecret


class IntegrationSecretForm(forms.ModelForm):
    secret = forms.CharField(required=False, strip=True, widget=forms.PasswordInput(render_value=False),
                             help_text="Leave empty to generate one (shown once after saving); "
                                       "on an existing row, empty keeps the current secret.")

    class Meta:
        model = IntegrationSecret
        fields = ["tenant", "kind", "header", "timestamp_header"]

    def clean_secret(self) -> str:
        value = self.cleaned_data.get("secret") or ""
        if value and len(value) < 16:
            raise forms.ValidationError("at least 16 characters")
        return value


@admin.register(IntegrationSecret)
class IntegrationSecretAdmin(admin.ModelAdmin):
    form = IntegrationSecretForm
    list_display = ("tenant", "kind", "header", "timestamp_header", "updated_at")
    list_select_related = ("tenant",)
    list_filter = ("kind",)
    raw_id_fields = ("tenant",)
    readonly_fields = ("created_at", "updated_at")

    def get_readonly_fields(self, request, obj=None):
        # A row is one (tenant, kind): moving it would leave the old secret behind.
        return self.readonly_fields + (("tenant", "kind") if obj else ())

    def save_model(self, request, obj, form, change):
        plain = form.cleaned_data.get("secret")
        if change and not plain:
            # Header changes only: keep the secret, still through the one audited writer.
            plain = crypto.decrypt(IntegrationSecret.objects.get(pk=obj.pk).secret_encrypted,
                                   settings.FIELD_ENCRYPTION_KEYS)
        secret = set_secret(tenant=obj.tenant, kind=obj.kind, actor=request.user, secret=plain or None,
                            header=obj.header or DEFAULT_HEADER, timestamp_header=obj.timestamp_header)
        saved = IntegrationSecret.objects.get(tenant=obj.tenant, kind=obj.kind)
        obj.pk, obj.secret_encrypted, obj.created_at, obj.updated_at = (
            saved.pk, saved.secret_encrypted, saved.created_at, saved.updated_at)
        if not form.cleaned_data.get("secret") and not change:
            messages.warning(request, f"Generated secret (shown once, copy it into the Grafana contact point): {secret}")

    def delete_model(self, request, obj):
        delete_secret(tenant=obj.tenant, kind=obj.kind, actor=request.user)

    def delete_queryset(self, request, queryset):
        for obj in queryset.select_related("tenant"):
            delete_secret(tenant=obj.tenant, kind=obj.kind, actor=request.user)
