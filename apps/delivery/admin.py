"""Admin: endpoints (no secrets shown), deliveries with their attempts (read-only), retry action.

Endpoint edits and deletes go through the same services as the API: the URL gets the registration
SSRF check (refused next to the field), event types and severity the same validation, and every
change or delete writes the same audit row (``webhook.updated`` / ``webhook.deleted``).
"""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages

from apps.core import clock
from apps.core.errors import ApplicationError

from .models import Delivery, DeliveryAttempt, WebhookEndpoint
from .services import (
    _clean_event_types,  # the API's validation, shared rather than copied
    delete_endpoint,
    retry_deliveries,
    self_test_endpoint,
    update_endpoint,
    validate_url,
)

EDITABLE = ("url", "description", "min_severity", "event_types", "enabled")


def _service_check(check, value):  # type: ignore[no-untyped-def]
    try:
        return check(value)
    except ApplicationError as exc:
        raise forms.ValidationError(exc.message) from None


class WebhookEndpointForm(forms.ModelForm):
    class Meta:
        model = WebhookEndpoint
        fields = EDITABLE

    def clean_url(self) -> str:
        return _service_check(validate_url, self.cleaned_data["url"])

    def clean_event_types(self) -> list[str]:
        return _service_check(_clean_event_types, self.cleaned_data["event_types"])


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ("id", "tenant", "url", "enabled", "min_severity", "failure_streak", "downgraded_at", "created_at")
    list_select_related = ("tenant",)
    list_filter = ("enabled", "min_severity", "tenant")
    search_fields = ("url", "description", "tenant__slug")
    form = WebhookEndpointForm
    fields = ("tenant", *EDITABLE, "disabled_reason", "failure_streak", "downgraded_at",
              "previous_secret_expires_at", "created_at", "updated_at")
    readonly_fields = ("tenant", "disabled_reason", "failure_streak", "downgraded_at", "previous_secret_expires_at",
                       "created_at", "updated_at")
    actions = ["self_test"]

    def has_add_permission(self, request):
        return False  # the secret is generated and shown once by the API (POST /api/v1/webhooks)

    def save_model(self, request, obj, form, change):
        changes = {name: form.cleaned_data[name] for name in form.changed_data if name in EDITABLE}
        if changes:
            # The stored row, not ``obj`` (the form already changed it): the service compares
            # against the stored values for the audit's "from" and for re-enabling.
            update_endpoint(endpoint=WebhookEndpoint.objects.get(pk=obj.pk), actor=request.user, **changes)

    def delete_model(self, request, obj):
        delete_endpoint(endpoint=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for endpoint in queryset:
            delete_endpoint(endpoint=endpoint, actor=request.user)

    @admin.action(description="Send a signed webhook.test now")
    def self_test(self, request, queryset):
        for endpoint in queryset:
            r = self_test_endpoint(endpoint=endpoint)
            level = messages.SUCCESS if r.ok else messages.ERROR
            self.message_user(request, f"#{endpoint.pk} {endpoint.url}: {r.status_code or '-'} {r.latency_ms} ms "
                                       f"{'ok' if r.ok else r.error}", level)


class AttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    readonly_fields = ("number", "channel", "started_at", "latency_ms", "status_code", "success", "error",
                       "response_excerpt")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ("id", "tenant", "alert_id", "channel", "event_type", "state", "attempts", "next_attempt_at",
                    "created_at")
    list_select_related = ("tenant",)
    list_filter = ("state", "channel", "event_type")
    search_fields = ("msg_id", "alert__id")
    raw_id_fields = ("alert", "endpoint", "source", "tenant")
    exclude = ("body",)
    inlines = [AttemptInline]
    actions = ["retry_now"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields if f.name != "body"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Retry now (failed and downgraded only)")
    def retry_now(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        since = min(queryset.values_list("created_at", flat=True), default=clock.now())
        r = retry_deliveries(since=since, ids=ids)
        self.message_user(request, f"{r['retried']} deliveries due again, {r['skipped']} skipped (endpoint gone)")
