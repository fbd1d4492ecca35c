"""What the intake stores: one ``IngestBatch`` per accepted request, ``EventRecord`` per kept event.

The batch row is the durable hand-off between the web process and the detect worker: it is
committed before the API answers 202, and the broker message that follows is only a doorbell
(DESIGN 3.2). Its payload is the normalized, masked events encoded by ``apps.ingest.codec``.
"""
from __future__ import annotations

from django.db import models
from django.db.models import Q


class BatchStatus(models.TextChoices):
    PENDING = "PENDING", "Pending"
    DONE = "DONE", "Done"
    # Given up after INGEST_MAX_ATTEMPTS failed runs (a poison batch must not be swept forever).
    FAILED = "FAILED", "Failed"


class IngestBatch(models.Model):
    tenant = models.ForeignKey(
        "tenants.Tenant", null=True, blank=True, on_delete=models.CASCADE, related_name="+",
        help_text="Empty when a platform token's batch spans several tenants",
    )
    token = models.ForeignKey("tenants.ApiToken", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    received_at = models.DateTimeField()
    event_count = models.PositiveIntegerField()
    rejected_count = models.PositiveIntegerField(default=0)
    # orjson of the normalized, masked events (apps.ingest.codec); emptied once processed, since
    # the kept events live on as EventRecord rows and the rest must not pile up here.
    payload = models.BinaryField()
    status = models.CharField(max_length=8, choices=BatchStatus.choices, default=BatchStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Failed processing runs")
    # Last time the sweeper re-enqueued it; keeps a long queue backlog from being enqueued twice.
    swept_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["received_at"], name="ingestbatch_pending",
                         condition=Q(status="PENDING")),
        ]

    def __str__(self) -> str:
        return f"batch #{self.pk} ({self.event_count} events, {self.status})"


class EventRecord(models.Model):
    """A stored log event: level >= WARNING or matched by a rule (evidence for alerts)."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    plugin = models.ForeignKey("tenants.Plugin", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    ts = models.DateTimeField()
    level = models.CharField(max_length=10)
    level_no = models.PositiveSmallIntegerField()
    message = models.TextField()
    trace_id = models.CharField(max_length=128, null=True, blank=True)
    fields = models.JSONField(default=dict, blank=True)
    rule_keys = models.JSONField(default=list, blank=True)
    # A plain reference, not a constraint: batches are purged long before their events.
    batch = models.ForeignKey(IngestBatch, null=True, blank=True, on_delete=models.DO_NOTHING,
                              db_constraint=False, related_name="+")
    received_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "plugin", "-ts"], name="eventrecord_tenant_plugin_ts"),
            models.Index(fields=["trace_id"], name="eventrecord_trace",
                         condition=Q(trace_id__isnull=False)),
            models.Index(fields=["ts"], name="eventrecord_ts"),
        ]

    def __str__(self) -> str:
        return f"[{self.level}] {self.message[:80]}"
