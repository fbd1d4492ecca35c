from django.contrib import admin

from .models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("at", "actor_label", "action", "target_type", "target_id", "tenant", "ip")
    list_filter = ("action", "actor_type", "tenant")
    search_fields = ("action", "actor_label", "target_id")
    list_select_related = ("tenant",)
    date_hierarchy = "at"

    # Read-only: the audit trail is append-only everywhere, the admin included.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
