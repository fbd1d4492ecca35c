"""Webhook endpoints, the delivery outbox and its attempt log.

A ``Delivery`` row is one message to one destination: a tenant webhook (``channel=webhook``) or a
fallback email/SMS (``channel=email|sms``, ``recipients`` set, ``source`` pointing at the webhook
delivery that was downgraded, or empty for a manual send or a notice to the tenant). The row is
written in the transaction of the change it announces (the outbox) and its body is frozen there:
retries send the same bytes with the same ``msg_id`` (the ``webhook-id`` receivers dedupe on); only
the signature timestamp changes per attempt.
"""
from __future__ import annotations

from django.db import models
from django.db.models import Q

from apps.core.vocabulary import SEVERITIES, DeliveryState


class WebhookEndpoint(models.Model):
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=500, blank=True)
    # Fernet tokens (apps.delivery.crypto with FIELD_ENCRYPTION_KEYS): a database dump yields no secret.
    secret_encrypted = models.TextField()
    # The secret before the last rotation keeps signing until previous_secret_expires_at (overlap).
    previous_secret_encrypted = models.TextField(blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    min_severity = models.CharField(max_length=16, choices=[(s, s.title()) for s in SEVERITIES], default="info")
    event_types = models.JSONField(default=list, help_text="Subset of alert.triggered, alert.updated, alert.escalated")
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=500, blank=True)
    # Consecutive failed attempts across all deliveries; persisted so a restart keeps the downgrade.
    failure_streak = models.PositiveIntegerField(default=0)
    downgraded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant_id", "id"]
        indexes = [models.Index(fields=["tenant", "enabled"], name="endpoint_tenant_enabled")]

    def __str__(self) -> str:
        return f"{self.url} (#{self.pk})"


class Channel(models.TextChoices):
    WEBHOOK = "webhook", "Webhook"
    EMAIL = "email", "Email"
    SMS = "sms", "SMS"


DUE_STATES = (DeliveryState.PENDING, DeliveryState.DOWNGRADED)
FINAL_STATES = (DeliveryState.DELIVERED, DeliveryState.FAILED)


class Delivery(models.Model):
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    # Empty only for notices to the tenant about an endpoint (disabled, restored).
    alert = models.ForeignKey("alerts.Alert", null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries")
    # Kept when the endpoint is deleted: the history stays, pending attempts fail with a clear error.
    endpoint = models.ForeignKey(WebhookEndpoint, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="deliveries")
    source = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="fallbacks",
                               help_text="For a fallback email/SMS: the webhook delivery that was downgraded")
    channel = models.CharField(max_length=8, choices=Channel.choices, default=Channel.WEBHOOK)
    event_type = models.CharField(max_length=40)
    msg_id = models.CharField(max_length=64, unique=True)
    body = models.BinaryField()
    recipients = models.JSONField(default=list, blank=True)
    plugin_id = models.BigIntegerField(null=True, blank=True)  # for log lines only; no FK on purpose

    state = models.CharField(max_length=12, choices=DeliveryState.choices, default=DeliveryState.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    claim_token = models.CharField(max_length=32, blank=True)
    last_error = models.TextField(blank=True)
    last_status_code = models.IntegerField(null=True, blank=True)
    created_at = models.DateTimeField()
    # Give up after this (DELIVERY_MAX_AGE_SECONDS from creation; retry_deliveries extends it).
    expires_at = models.DateTimeField()
    downgraded_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        indexes = [
            # The sweeper's two scans: due rows, and rows whose sender vanished mid-send.
            models.Index(fields=["next_attempt_at"], name="delivery_due",
                         condition=Q(state__in=["PENDING", "DOWNGRADED"])),
            models.Index(fields=["claimed_at"], name="delivery_sending", condition=Q(state="SENDING")),
            models.Index(fields=["alert", "created_at"], name="delivery_alert"),
            models.Index(fields=["endpoint", "-created_at"], name="delivery_endpoint_recent"),
            models.Index(fields=["tenant", "created_at"], name="delivery_tenant_created"),
        ]

    def __str__(self) -> str:
        return f"{self.channel} {self.event_type} {self.msg_id} [{self.state}]"


class DeliveryAttempt(models.Model):
    """One try of one delivery: what was sent where, what came back, how long it took."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    channel = models.CharField(max_length=8, choices=Channel.choices)
    started_at = models.DateTimeField()
    latency_ms = models.PositiveIntegerField(default=0)
    status_code = models.IntegerField(null=True, blank=True)
    success = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    response_excerpt = models.TextField(blank=True)

    class Meta:
        ordering = ["delivery_id", "number", "id"]
        indexes = [models.Index(fields=["delivery", "number"], name="attempt_delivery_number")]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.delivery_id}: {'ok' if self.success else self.error[:40]}"
