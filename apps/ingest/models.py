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


class BatchKind(models.TextChoices):
    """What a batch's payload holds; the detect worker dispatches on it."""

    LOGS = "logs", "Log events"
    ALERTMANAGER = "alertmanager", "Prometheus Alertmanager alerts"
    GRAFANA = "grafana", "Grafana alerts"
    EVENTS = "events", "Generic events"
    METRICS = "metrics", "Metric samples"


class IngestBatch(models.Model):
    kind = models.CharField(max_length=16, choices=BatchKind.choices, default=BatchKind.LOGS)
    tenant = models.ForeignKey(
        "tenants.Tenant", null=True, blank=True, on_delete=models.CASCADE, related_name="+",
        help_text="Empty when a platform token's batch spans several tenants",
    )
    token = models.ForeignKey("tenants.ApiToken", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    received_at = models.DateTimeField()
    event_count = models.PositiveIntegerField()
    rejected_count = models.PositiveIntegerField(default=0)
    # orjson of the normalized, masked events (apps.ingest.codec; for the inbound integrations,
    # apps.ingest.integrations.entries); emptied once processed, since what is kept lives on as
    # EventRecord or Alert rows and the rest must not pile up here.
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

    # Stored events are the bulk of what intake writes, so they carry no more than they need:
    # * no index of its own on tenant: eventrecord_tenant_plugin_ts starts with it;
    # * no database constraint on tenant and plugin: the detect worker takes both ids from the rows
    #   it has just read in the same transaction, and PostgreSQL checked each constraint with a
    #   query per row at commit (~9% of its CPU in bench/ingest.py). Deleting a tenant or plugin
    #   still deletes or unlinks its events: Django's on_delete does that, not the constraint.
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+", db_index=False,
                               db_constraint=False)
    plugin = models.ForeignKey("tenants.Plugin", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                               db_constraint=False)
    ts = models.DateTimeField()
    level = models.CharField(max_length=10)
    level_no = models.PositiveSmallIntegerField()
    message = models.TextField()
    trace_id = models.CharField(max_length=128, null=True, blank=True)
    fields = models.JSONField(default=dict, blank=True)
    rule_keys = models.JSONField(default=list, blank=True)
    # A plain reference, not a constraint: batches are purged long before their events. Nothing
    # looks events up by batch, so no index either.
    batch = models.ForeignKey(IngestBatch, null=True, blank=True, on_delete=models.DO_NOTHING,
                              db_constraint=False, db_index=False, related_name="+")
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


class IntegrationSecret(models.Model):
    """A tenant's shared secret for signed inbound webhooks (Grafana's HMAC), encrypted at rest.

    When a tenant has one for a kind, requests of that kind without a valid signature are refused
    (apps.ingest.integrations.signature). Set it with ``manage.py set_integration_secret`` or the admin.
    """

    class Kind(models.TextChoices):
        GRAFANA = "grafana", "Grafana"

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # Fernet token (apps.delivery.crypto with FIELD_ENCRYPTION_KEYS), never the plain secret.
    secret_encrypted = models.TextField()
    header = models.CharField(max_length=100, default="X-Grafana-Alerting-Signature",
                              help_text="Request header carrying hex(HMAC-SHA256(secret, ...))")
    timestamp_header = models.CharField(
        max_length=100, blank=True,
        help_text="If set, the signature covers '<this header's value>:<body>' and the timestamp must be recent")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "kind"], name="integrationsecret_tenant_kind")]

    def __str__(self) -> str:
        return f"{self.kind} secret of tenant {self.tenant_id}"


class HeartbeatState(models.TextChoices):
    """UP and DOWN are stored; LATE is derived for display (past the timeout, within the grace)."""

    UP = "up", "Up"
    LATE = "late", "Late"
    DOWN = "down", "Down"


class Heartbeat(models.Model):
    """A job that promises to ping ``POST /api/v1/heartbeats/<name>`` at least every ``timeout``.

    Created by its first ping (apps.ingest.heartbeats). ``next_due_at`` = last ping + timeout +
    grace; the sweeper claims UP rows past it, turns them DOWN and raises one alert; the next ping
    turns them UP and resolves it (healthchecks' Check.alert_after / status, with the alert's
    timeline as the flip history).
    """

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=63)
    timeout_seconds = models.PositiveIntegerField()
    grace_seconds = models.PositiveIntegerField(default=0)
    severity = models.CharField(max_length=10, default="critical")
    plugin = models.ForeignKey("tenants.Plugin", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    last_seen_at = models.DateTimeField()
    next_due_at = models.DateTimeField()
    state = models.CharField(max_length=4, default=HeartbeatState.UP,
                             choices=[(HeartbeatState.UP, "Up"), (HeartbeatState.DOWN, "Down")])
    # The alert the last miss raised; kept after it resolves, for the console's link.
    alert = models.ForeignKey("alerts.Alert", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="heartbeat_tenant_name")]
        indexes = [
            # What the sweeper reads: UP heartbeats by due time (DOWN ones wait for a ping).
            models.Index(fields=["next_due_at"], name="heartbeat_due", condition=Q(state="up")),
        ]

    def __str__(self) -> str:
        return f"heartbeat {self.name} ({self.state})"
