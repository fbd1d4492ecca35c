"""The audit trail: append-only for real.

The model and its queryset refuse update and delete; on PostgreSQL a trigger refuses them too
(migration 0002), so raw SQL cannot rewrite history either. The one exception is retention:
``apps.audit.retention.purge_before`` deletes rows past the retention period inside a
transaction that sets ``alertcenter.audit_purge``, and records that it did so.
"""
from __future__ import annotations

from django.db import models


class AppendOnlyError(Exception):
    pass


class AuditQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("audit events are append-only: update refused")

    def delete(self):
        raise AppendOnlyError("audit events are append-only: delete refused")

    def bulk_update(self, *args, **kwargs):
        raise AppendOnlyError("audit events are append-only: update refused")


class AuditEvent(models.Model):
    class ActorType(models.TextChoices):
        USER = "user", "User"
        TOKEN = "token", "API token"
        SYSTEM = "system", "System"

    at = models.DateTimeField(db_index=True)
    actor_type = models.CharField(max_length=8, choices=ActorType.choices)
    actor_id = models.CharField(max_length=64, blank=True)
    actor_label = models.CharField(max_length=200, blank=True)
    action = models.CharField(max_length=100, db_index=True)
    target_type = models.CharField(max_length=100, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    # No database constraint: deleting a tenant must not rewrite (or be blocked by) its history.
    tenant = models.ForeignKey(
        "tenants.Tenant", null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+",
        db_index=False,  # audit_tenant_at (tenant, at) serves its lookups
    )
    data = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "-at"], name="audit_tenant_at"),
            models.Index(fields=["target_type", "target_id"], name="audit_target"),
        ]

    def save(self, *args, **kwargs):
        if self.pk is not None and not self._state.adding:
            raise AppendOnlyError("audit events are append-only: update refused")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("audit events are append-only: delete refused")

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_label or self.actor_type} {self.action} {self.target_type}:{self.target_id}"
