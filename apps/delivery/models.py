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
    # While downgraded: not probed before this (apps.delivery.breaker); set by the downgrade and by
    # each failed probe, from the probes failed since the downgrade (sends that were in flight when
    # it came are not probes: a storm's dozen would otherwise start the pacing at its cap).
    next_probe_at = models.DateTimeField(null=True, blank=True)
    failed_probes = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant_id", "id"]
        indexes = [models.Index(fields=["tenant", "enabled"], name="endpoint_tenant_enabled")]

    def __str__(self) -> str:
        return f"{self.url} (#{self.pk})"


class Channel(models.TextChoices):
    """The kind of destination of one delivery row (and of a ``NotificationChannel``)."""

    WEBHOOK = "webhook", "Webhook"
    EMAIL = "email", "Email"
    SMS = "sms", "SMS"
    SLACK = "slack", "Slack"
    TEAMS = "teams", "Microsoft Teams"
    PAGERDUTY = "pagerduty", "PagerDuty"
    OPSGENIE = "opsgenie", "Opsgenie"


# Kinds a tenant configures as a NotificationChannel (webhooks keep their own endpoints and API).
CHANNEL_KINDS = (Channel.EMAIL, Channel.SMS, Channel.SLACK, Channel.TEAMS, Channel.PAGERDUTY, Channel.OPSGENIE)
CHANNEL_KIND_CHOICES = [(k.value, k.label) for k in CHANNEL_KINDS]
# Kinds whose messages can be grouped (a digest of several alerts makes sense there).
GROUPABLE_KINDS = (Channel.EMAIL, Channel.SLACK, Channel.TEAMS)


class NotificationChannel(models.Model):
    """A tenant's destination of one kind (Slack webhook, PagerDuty service, mailing list, ...).

    ``config`` holds what may be shown (base_url, recipients, ...); ``secrets_encrypted`` the rest
    (webhook URLs of chat tools, routing keys, API keys) as one Fernet token of a JSON object, never
    shown after creation. ``templates`` optionally overrides the kind's title/body templates.
    """

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="notification_channels")
    name = models.SlugField(max_length=100)
    kind = models.CharField(max_length=16, choices=CHANNEL_KIND_CHOICES)
    config = models.JSONField(default=dict, blank=True)
    secrets_encrypted = models.TextField(blank=True)
    templates = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    # Messages per minute this channel may send (None: the kind's default); the excess waits, never dropped.
    rate_limit_per_minute = models.PositiveIntegerField(null=True, blank=True)
    failure_streak = models.PositiveIntegerField(default=0)
    downgraded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant_id", "name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="channel_tenant_name")]

    def __str__(self) -> str:
        return f"{self.kind}:{self.name} (#{self.pk})"


class NotificationPolicy(models.Model):
    """One node of a tenant's routing list: alerts matching ``matchers`` go to ``channels`` (and the
    tenant's subscribed webhooks when ``webhooks``); the first match wins unless ``continue_matching``.
    ``group_by`` + the intervals group chat/email messages (Alertmanager's semantics)."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="notification_policies")
    name = models.SlugField(max_length=100)
    position = models.PositiveIntegerField(default=0, help_text="Evaluated in ascending order")
    enabled = models.BooleanField(default=True)
    matchers = models.JSONField(default=dict, blank=True)
    channels = models.ManyToManyField(NotificationChannel, blank=True, related_name="policies")
    webhooks = models.BooleanField(default=True, help_text="Also send to the tenant's subscribed webhook endpoints")
    continue_matching = models.BooleanField(default=False)
    group_by = models.JSONField(default=list, blank=True)
    group_wait_seconds = models.PositiveIntegerField(default=30)
    group_interval_seconds = models.PositiveIntegerField(default=300)
    repeat_interval_seconds = models.PositiveIntegerField(default=14400)
    fallback_channels = models.ManyToManyField(NotificationChannel, blank=True, related_name="fallback_for")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant_id", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="policy_tenant_name")]
        verbose_name_plural = "notification policies"

    def __str__(self) -> str:
        return f"{self.name} (#{self.pk})"


class NotificationGroup(models.Model):
    """Alerts waiting to go out together on one grouped channel: flushed by the sweeper at most once
    per ``group_interval`` (the first time after ``group_wait``)."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    policy = models.ForeignKey(NotificationPolicy, on_delete=models.CASCADE, related_name="groups")
    channel = models.ForeignKey(NotificationChannel, on_delete=models.CASCADE, related_name="groups")
    group_key = models.CharField(max_length=64)
    group_labels = models.JSONField(default=dict, blank=True)
    # [{alert_id, event_type, severity, title, plugin, url}] not yet sent
    pending = models.JSONField(default=list, blank=True)
    next_flush_at = models.DateTimeField(null=True, blank=True)
    last_flush_at = models.DateTimeField(null=True, blank=True)
    sent_alert_ids = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["policy", "channel", "group_key"], name="group_unique_key")]
        indexes = [models.Index(fields=["next_flush_at"], name="group_flush_due", condition=Q(next_flush_at__isnull=False))]


DUE_STATES = (DeliveryState.PENDING, DeliveryState.DOWNGRADED)
FINAL_STATES = (DeliveryState.DELIVERED, DeliveryState.FAILED)


class Delivery(models.Model):
    # tenant, alert, endpoint: no index of their own; delivery_tenant_created, delivery_alert and
    # delivery_endpoint_recent lead with them and serve their lookups (each row is written three
    # times: created, claimed, recorded, and every write updates every index).
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+", db_index=False)
    # Empty only for notices to the tenant about an endpoint (disabled, restored).
    alert = models.ForeignKey("alerts.Alert", null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries",
                              db_index=False)
    # Kept when the endpoint is deleted: the history stays, pending attempts fail with a clear error.
    endpoint = models.ForeignKey(WebhookEndpoint, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="deliveries", db_index=False)
    # source, notification_channel: indexed only where set (delivery_source, delivery_channel): a
    # webhook row has neither, and a partial index takes no entry for it at any of its writes.
    source = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="fallbacks",
                               db_index=False,
                               help_text="For a fallback email/SMS: the webhook delivery that was downgraded")
    channel = models.CharField(max_length=16, choices=Channel.choices, default=Channel.WEBHOOK)
    # For a delivery to a tenant's configured channel (Slack, PagerDuty, ...); its body is a ChannelRequest.
    notification_channel = models.ForeignKey(NotificationChannel, null=True, blank=True, on_delete=models.SET_NULL,
                                             related_name="deliveries", db_index=False)
    # Channel rows: the notification payload they were rendered from (their fallback renders it again).
    payload = models.BinaryField(null=True, blank=True)
    # The routing policy's fallback channels for this row (empty: the tenant's email/SMS contacts).
    fallback_channels = models.JSONField(default=list, blank=True)
    event_type = models.CharField(max_length=40)
    # Unique by delivery_msg_id_unique: a constraint, not unique=True, which would add a
    # varchar_pattern_ops index for LIKE that nothing uses.
    msg_id = models.CharField(max_length=64)
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
            # A downgraded endpoint's rows (apps.delivery.breaker): those not parked yet, the parked
            # ones by age (upkeep, release, drain).
            models.Index(fields=["endpoint", "next_attempt_at", "expires_at"], name="delivery_endpoint_due",
                         condition=Q(state__in=["PENDING", "DOWNGRADED"])),
            # Parked rows only (none while every endpoint answers): the probe order, and which
            # endpoints have parked rows.
            models.Index(fields=["endpoint", "attempts", "expires_at"], name="delivery_probe",
                         condition=Q(state__in=["PENDING", "DOWNGRADED"], next_attempt_at__isnull=True)),
            # The same rows by expiry: the watchdog's count of those left parked past it (apps.ops.figures).
            models.Index(fields=["expires_at"], name="delivery_parked_expiry",
                         condition=Q(state__in=["PENDING", "DOWNGRADED"], next_attempt_at__isnull=True)),
            models.Index(fields=["alert", "created_at"], name="delivery_alert"),
            models.Index(fields=["endpoint", "-created_at"], name="delivery_endpoint_recent"),
            models.Index(fields=["tenant", "created_at"], name="delivery_tenant_created"),
            # `source_id = x` / `IN (..)` imply IS NOT NULL, so lookups and the SET_NULL on delete use them.
            models.Index(fields=["source"], name="delivery_source", condition=Q(source__isnull=False)),
            models.Index(fields=["notification_channel"], name="delivery_channel",
                         condition=Q(notification_channel__isnull=False)),
        ]
        constraints = [models.UniqueConstraint(fields=["msg_id"], name="delivery_msg_id_unique")]

    def __str__(self) -> str:
        return f"{self.channel} {self.event_type} {self.msg_id} [{self.state}]"


class DeliveryAttempt(models.Model):
    """One try of one delivery: what was sent where, what came back, how long it took."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log",
                                 db_index=False)  # attempt_delivery_number leads with it
    number = models.PositiveIntegerField()
    channel = models.CharField(max_length=16, choices=Channel.choices)
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
