"""Admin: alerts are read-only records worked through actions that call the services (so the
admin writes the same timeline, audit and events as the API); silences go through services too.
Model permissions come from the staff groups (migration 0003): operators change alerts and
silences, governance manages escalation policies, auditors only view."""
from __future__ import annotations

from django.contrib import admin, messages

from apps.core.errors import ApplicationError

from . import services, silences
from .models import Alert, EscalationPolicy, Silence, TimelineEntry


class TimelineInline(admin.TabularInline):
    model = TimelineEntry
    extra = 0
    fields = ("at", "kind", "actor_label", "message", "data")
    readonly_fields = fields
    can_delete = False
    ordering = ("-at", "-id")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


def _run(modeladmin, request, queryset, verb: str, call) -> None:
    done, refused = 0, []
    for alert_id in queryset.values_list("pk", flat=True):
        try:
            call(alert_id=alert_id, actor=request.user)
            done += 1
        except ApplicationError as exc:
            refused.append(exc.message)
    if done:
        modeladmin.message_user(request, f"{verb} {done} alert(s).", messages.SUCCESS)
    for message in refused[:10]:
        modeladmin.message_user(request, message, messages.WARNING)


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ("id", "title", "tenant", "plugin", "severity", "state", "count", "escalation_level",
                    "assignee", "delivery_state", "last_seen", "created_at")
    list_select_related = ("tenant", "plugin", "assignee")
    list_filter = ("state", "severity", "delivery_state", "tenant")
    search_fields = ("title", "summary", "rule_key", "=fingerprint")
    date_hierarchy = "created_at"
    inlines = [TimelineInline]
    actions = ["acknowledge", "resolve"]
    exclude = ("assignee", "silence")

    def get_readonly_fields(self, request, obj=None):
        # Changes go through the actions (services); the form only shows the record.
        return [f.name for f in self.model._meta.fields if f.name not in self.exclude]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Acknowledge selected alerts", permissions=["change"])
    def acknowledge(self, request, queryset):
        _run(self, request, queryset, "Acknowledged", services.alert_acknowledge)

    @admin.action(description="Resolve selected alerts", permissions=["change"])
    def resolve(self, request, queryset):
        _run(self, request, queryset, "Resolved", services.alert_resolve)


@admin.register(Silence)
class SilenceAdmin(admin.ModelAdmin):
    list_display = ("id", "tenant", "matchers", "starts_at", "ends_at", "expired_at", "reason", "created_by")
    list_select_related = ("tenant",)
    list_filter = ("tenant",)
    search_fields = ("reason", "created_by")
    autocomplete_fields = ("tenant",)
    actions = ["expire"]

    def get_readonly_fields(self, request, obj=None):
        # Once created, only the end and the reason change (alerts it suppresses follow the end).
        base = ["created_by", "created_at", "expired_at"]
        return base + ["tenant", "matchers", "starts_at"] if obj else base

    def save_model(self, request, obj, form, change):
        if change:
            silences.silence_update(silence=obj, actor=request.user, ends_at=obj.ends_at, reason=obj.reason)
        else:
            created = silences.silence_create(actor=request.user, tenant_id=obj.tenant_id, matchers=obj.matchers,
                                              starts_at=obj.starts_at, ends_at=obj.ends_at, reason=obj.reason)
            obj.pk = created.pk

    @admin.action(description="Expire selected silences now", permissions=["change"])
    def expire(self, request, queryset):
        done = 0
        for silence_id in queryset.values_list("pk", flat=True):
            try:
                silences.silence_expire(silence_id=silence_id, actor=request.user)
                done += 1
            except ApplicationError as exc:
                self.message_user(request, exc.message, messages.WARNING)
        if done:
            self.message_user(request, f"Expired {done} silence(s).", messages.SUCCESS)


@admin.register(EscalationPolicy)
class EscalationPolicyAdmin(admin.ModelAdmin):
    list_display = ("__str__", "tenant", "plugin", "severity", "steps", "repeat", "enabled")
    list_select_related = ("tenant", "plugin__tenant")
    list_filter = ("severity", "enabled", "tenant")
    autocomplete_fields = ("tenant", "plugin")
