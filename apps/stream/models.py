from __future__ import annotations

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from apps.tenants.models import Tenant


class StreamEventType(models.TextChoices):
    ALERT_CREATED = "alert.created", "Alert created"
    ALERT_UPDATED = "alert.updated", "Alert updated"
    ALERT_ESCALATED = "alert.escalated", "Alert escalated"
    DELIVERY_UPDATED = "delivery.updated", "Delivery updated"


class StreamEvent(models.Model):
    """One change as the live stream tells it. ``id`` is the SSE event id (monotonic: a client
    resumes with ``Last-Event-ID`` = the last id it saw). Rows are written in the change's own
    transaction, so a rolled-back change leaves no event; purged after STREAM_RETENTION_DAYS."""

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", db_index=False)  # stream_tenant_id
    type = models.CharField(max_length=32, choices=StreamEventType.choices)
    # No FK: the stream sits below alerts (DESIGN 8), and an event outlives nothing it points at.
    alert_id = models.BigIntegerField(null=True, blank=True)
    data = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField()

    class Meta:
        indexes = [
            # Replay: WHERE tenant_id IN (...) AND id > N ORDER BY id.
            models.Index(fields=["tenant", "id"], name="stream_tenant_id"),
            models.Index(fields=["created_at"], name="stream_created_at"),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.type} tenant={self.tenant_id} alert={self.alert_id}"
