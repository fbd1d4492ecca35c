"""Admin: endpoints (no secrets shown), deliveries with their attempts (read-only), retry action.

Endpoint edits and deletes go through the same services as the API: the URL gets the registration
SSRF check (refused next to the field), event types and severity the same validation, and every
change or delete writes the same audit row (``webhook.updated`` / ``webhook.deleted``).
"""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm

from apps.core import clock
from apps.core.errors import ApplicationError

from . import channel_services
from .models import (
    Delivery,
    DeliveryAttempt,
    NotificationChannel,
    NotificationPolicy,
    WebhookEndpoint,
)
from .policies import preview as policy_preview
from .secrets import channel_secrets
from .services import (
    _clean_event_types,  # the API's validation, shared rather than copied
    delete_endpoint,
    retry_deliveries,
    self_test_endpoint,
    update_endpoint,
    validate_url,
)
from .transports.channels import CONFIG_FIELDS

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
    fields = ("tenant", *EDITABLE, "disabled_reason", "failure_streak", "downgraded_at", "next_probe_at", "failed_probes",
              "previous_secret_expires_at", "created_at", "updated_at")
    readonly_fields = ("tenant", "disabled_reason", "failure_streak", "downgraded_at", "next_probe_at", "failed_probes",
                       "previous_secret_expires_at", "created_at", "updated_at")
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


# --------------------------------------------------------------------------- channels and policies
# Saves go through apps.delivery.channel_services (the API's validation and audit rows); the forms
# run the same checks in clean() so a refusal shows next to the field instead of as a 500.


def _field_error(exc: ApplicationError) -> str:
    return exc.message


class ChannelAdminForm(forms.ModelForm):
    secrets = forms.JSONField(
        required=False, widget=forms.Textarea(attrs={"rows": 3, "autocomplete": "off"}),
        help_text="Secret config keys as JSON, e.g. {\"webhook_url\": \"https://hooks.slack.com/...\"} or "
                  "{\"routing_key\": \"...\"}. Write-only: never shown; leave empty to keep the stored ones.")

    class Meta:
        model = NotificationChannel
        fields = ("tenant", "kind", "name", "config", "templates", "rate_limit_per_minute", "enabled")
        help_texts = {"config": "Public config keys as JSON (recipients, numbers, base_url)"}

    def clean(self):  # type: ignore[no-untyped-def]
        data = super().clean()
        kind = data.get("kind") or getattr(self.instance, "kind", "")
        if not kind or self.errors:
            return data
        stored = channel_secrets(self.instance) if self.instance.pk else {}
        merged = {**(data.get("config") or {}), **stored, **(data.get("secrets") or {})}
        try:
            channel_services._split_config(kind, merged)
        except ApplicationError as exc:
            key = str(next(iter(exc.details or {}), "")).removeprefix("config.")
            secret = CONFIG_FIELDS.get(kind, {}).get(key, {}).get("secret")
            self.add_error("secrets" if secret else "config", _field_error(exc))
        try:
            channel_services.preview_templates(kind, data.get("templates"))
        except ApplicationError as exc:
            self.add_error("templates", _field_error(exc))
        return data


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    list_display = ("id", "tenant", "kind", "name", "enabled", "rate_limit_per_minute", "failure_streak",
                    "downgraded_at")
    list_select_related = ("tenant",)
    list_filter = ("kind", "enabled", "tenant")
    search_fields = ("name", "tenant__slug")
    form = ChannelAdminForm
    actions = ["send_test"]

    def get_readonly_fields(self, request, obj=None):
        return ("tenant", "kind", "failure_streak", "downgraded_at") if obj else ("failure_streak", "downgraded_at")

    def get_fields(self, request, obj=None):
        return ("tenant", "kind", "name", "config", "secrets", "templates", "rate_limit_per_minute", "enabled",
                "failure_streak", "downgraded_at")

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        secrets = data.get("secrets") or {}
        if change:
            changes = {k: data[k] for k in form.changed_data if k in channel_services.CHANNEL_FIELDS and k != "config"}
            if "config" in form.changed_data or secrets:
                changes["config"] = {**(data.get("config") or {}), **secrets}
            channel, _ = channel_services.update_channel(channel=NotificationChannel.objects.get(pk=obj.pk),
                                                         actor=request.user, **changes)
        else:
            channel, _ = channel_services.create_channel(
                tenant=data["tenant"], kind=data["kind"], name=data["name"],
                config={**(data.get("config") or {}), **secrets}, templates=data.get("templates") or {},
                rate_limit_per_minute=data.get("rate_limit_per_minute"), enabled=data.get("enabled", True),
                actor=request.user)
        obj.pk = channel.pk

    def get_deleted_objects(self, objs, request):
        # The service refuses a channel a policy routes to (409 in the API); listed as protected,
        # the confirmation page says which policies and offers no delete button.
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        in_use = [f"{channel.kind}:{channel.name} is used by policy {use['name']} ({', '.join(use['as'])})"
                  for channel in objs for use in channel_services.policies_using(channel)]
        return deleted, counts, perms_needed, [*protected, *in_use]

    def delete_model(self, request, obj):
        channel_services.delete_channel(channel=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for channel in queryset:
            channel_services.delete_channel(channel=channel, actor=request.user)

    @admin.action(description="Send a test notification now")
    def send_test(self, request, queryset):
        for channel in queryset.select_related("tenant"):
            r = channel_services.test_channel(channel=channel)
            self.message_user(request, f"{channel.kind}:{channel.name}: {r.status_code or '-'} {r.latency_ms} ms "
                                       f"{'ok' if r.ok else r.error}", messages.SUCCESS if r.ok else messages.ERROR)


class PolicyAdminForm(forms.ModelForm):
    class Meta:
        model = NotificationPolicy
        fields = ("tenant", "name", "position", "enabled", "matchers", "channels", "webhooks", "continue_matching",
                  "group_by", "group_wait_seconds", "group_interval_seconds", "repeat_interval_seconds",
                  "fallback_channels")

    def clean(self):  # type: ignore[no-untyped-def]
        data = super().clean()
        tenant = data.get("tenant") or getattr(self.instance, "tenant", None)
        if tenant is None or self.errors:
            return data
        raw = {k: data[k] for k in ("matchers", "group_by", "group_wait_seconds", "group_interval_seconds",
                                    "repeat_interval_seconds") if data.get(k) is not None}
        for key in ("channels", "fallback_channels"):
            raw[key] = [c.pk for c in data.get(key) or []]
        try:
            values, _ = channel_services.clean_policy(tenant.pk, raw, partial=True)
        except ApplicationError as exc:
            field = next(iter(exc.details or {}), "").split(".")[0]
            self.add_error(field if field in self.fields else None, _field_error(exc))
            return data
        data.update(values)
        return data


class PreviewActionForm(ActionForm):
    alert_id = forms.IntegerField(required=False, label="Alert id (for preview)")


@admin.register(NotificationPolicy)
class NotificationPolicyAdmin(admin.ModelAdmin):
    list_display = ("id", "tenant", "position", "name", "enabled", "continue_matching", "webhooks")
    list_select_related = ("tenant",)
    list_filter = ("enabled", "tenant")
    search_fields = ("name", "tenant__slug")
    ordering = ("tenant__slug", "position", "id")
    form = PolicyAdminForm
    action_form = PreviewActionForm
    actions = ["preview"]

    def get_readonly_fields(self, request, obj=None):
        return ("tenant",) if obj else ()

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        # Only the policy's own tenant's channels are offered (and clean() refuses any other).
        match = request.resolver_match
        pk = match.kwargs.get("object_id") if match else None
        if pk and db_field.name in ("channels", "fallback_channels"):
            tenant_id = NotificationPolicy.objects.filter(pk=pk).values_list("tenant_id", flat=True).first()
            kwargs["queryset"] = NotificationChannel.objects.filter(tenant_id=tenant_id)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        fields = {k: form.cleaned_data[k] for k in form.changed_data if k in channel_services.POLICY_FIELDS}
        for key in ("channels", "fallback_channels"):
            if key in fields:
                fields[key] = [c.pk for c in fields[key]]
        if change:
            policy = channel_services.update_policy(policy=NotificationPolicy.objects.get(pk=obj.pk),
                                                    actor=request.user, **fields)
        else:
            fields.setdefault("name", form.cleaned_data["name"])
            policy = channel_services.create_policy(tenant=form.cleaned_data["tenant"], actor=request.user, **fields)
        obj.pk = policy.pk

    def save_related(self, request, form, formsets, change):
        pass  # the service already set channels and fallback channels, audited with the rest

    def delete_model(self, request, obj):
        channel_services.delete_policy(policy=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for policy in queryset:
            channel_services.delete_policy(policy=policy, actor=request.user)

    @admin.action(description="Preview: which channels would the alert (id above) reach?")
    def preview(self, request, queryset):
        from apps.alerts.models import Alert
        from apps.alerts.payload import alert_payload

        alert = (Alert.objects.select_related("tenant", "plugin", "assignee")
                 .filter(pk=request.POST.get("alert_id") or 0).first())
        if alert is None:
            self.message_user(request, "Give the id of an existing alert in the field next to the action.",
                              messages.ERROR)
            return
        out = policy_preview(tenant_id=alert.tenant_id, alert=alert_payload(alert), at=clock.now())
        reached = ", ".join(f"{c['kind']}:{c['name']} (policy {c['policy']})" for c in out["channels"]) or "no channel"
        hooks = ", ".join(w["url"] for w in out["webhooks"]) or "no webhook"
        policies = ", ".join(out["policies"]) or "none (the default policy: the tenant's webhooks)"
        self.message_user(request, f"Alert #{alert.pk} ({alert.tenant.slug}): policies {policies}; "
                                   f"channels {reached}; webhooks {hooks}")
