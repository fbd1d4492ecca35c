"""Alerts and their history.

An alert is identified by its fingerprint (rule + group key). While it is active (not RESOLVED),
new occurrences are absorbed into it; a partial unique index on active fingerprints makes that
safe when two workers race (the loser's INSERT fails and it absorbs instead).
"""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from apps.core.vocabulary import AlertDeliveryState, AlertSource, Severity


class AlertState(models.TextChoices):
    OPEN = "OPEN", "Open"
    ACKNOWLEDGED = "ACKNOWLEDGED", "Acknowledged"
    ESCALATED = "ESCALATED", "Escalated"
    SUPPRESSED = "SUPPRESSED", "Suppressed"
    RESOLVED = "RESOLVED", "Resolved"


# States in which an alert absorbs new occurrences of its fingerprint.
ACTIVE_STATES = (AlertState.OPEN, AlertState.ACKNOWLEDGED, AlertState.ESCALATED, AlertState.SUPPRESSED)
# States the escalation sweeper looks at (nobody has acknowledged yet).
UNACKNOWLEDGED_STATES = (AlertState.OPEN, AlertState.ESCALATED)


class Alert(models.Model):
    # No index of its own: alert_tenant_created (tenant, created_at) serves its lookups, one index
    # less to write per alert.
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="alerts", db_index=False)
    plugin = models.ForeignKey("tenants.Plugin", null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts")
    # The rule's stable id from the rule pack (e.g. "plugin-error-burst"); a string, not a foreign
    # key, because alerts must not depend on the rules app (data flows rules -> alerts).
    # Indexed by alert_rule_key: a plain btree, without the varchar_pattern_ops twin Django adds for
    # LIKE on an indexed CharField (nothing filters rules by prefix; one index less to write).
    rule_key = models.CharField(max_length=100, blank=True)
    rule_version = models.PositiveIntegerField(default=0)
    category = models.CharField(max_length=50, blank=True)
    fingerprint = models.CharField(max_length=64)
    group_key = models.JSONField(default=dict, blank=True)
    labels = models.JSONField(default=dict, blank=True)

    state = models.CharField(max_length=16, choices=AlertState.choices, default=AlertState.OPEN)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    delivery_state = models.CharField(max_length=16, choices=AlertDeliveryState.choices, default=AlertDeliveryState.NONE)

    title = models.CharField(max_length=300)
    summary = models.TextField(blank=True)
    recommended_action = models.TextField(blank=True)

    count = models.PositiveIntegerField(default=0, help_text="Occurrences absorbed (matching events)")
    window_seconds = models.PositiveIntegerField(default=0)
    first_seen = models.DateTimeField(help_text="Timestamp of the first matching event")
    last_seen = models.DateTimeField(help_text="Timestamp of the latest matching event")
    # When the log line that made this alert fire reached us: log-to-alert latency is measured from it.
    source_received_at = models.DateTimeField(null=True, blank=True)
    trace_ids = models.JSONField(default=list, blank=True)
    samples = models.JSONField(default=list, blank=True, help_text="Masked sample lines (capped)")
    # Alerts from every source share this model (DESIGN 10); log rules leave the metric fields empty.
    source = models.CharField(max_length=16, choices=AlertSource.choices, default=AlertSource.LOG_RULE)
    annotations = models.JSONField(default=dict, blank=True, help_text="Descriptions and links from the source")
    value = models.FloatField(null=True, blank=True, help_text="The metric value that fired (metric alerts)")
    threshold = models.FloatField(null=True, blank=True)
    baseline = models.JSONField(default=dict, blank=True, help_text="Anomaly baseline: mean, sigma, z, window")
    ticket_key = models.CharField(max_length=100, blank=True)
    ticket_url = models.URLField(max_length=500, blank=True)

    escalation_level = models.PositiveSmallIntegerField(default=0)
    last_escalated_at = models.DateTimeField(null=True, blank=True)
    # assignee, silence: indexed only where set (alert_assignee, alert_silence); most alerts have
    # neither, and a partial index takes no entry for them.
    assignee = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="assigned_alerts", db_index=False)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=200, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=200, blank=True)
    suppressed_until = models.DateTimeField(null=True, blank=True)
    suppressed_reason = models.CharField(max_length=500, blank=True)
    reopened_count = models.PositiveIntegerField(default=0)
    # Set while the alert is suppressed by a silence it was created (or reopened) under. Such an
    # alert has notified nobody yet, so when it is unsuppressed tenants get alert.triggered.
    silence = models.ForeignKey("Silence", null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts",
                                db_index=False)
    # From the rule (`auto_resolve: 15m`): resolve by itself when no matching event came for this long.
    auto_resolve_seconds = models.PositiveIntegerField(null=True, blank=True)
    # last_seen + auto_resolve_seconds, kept in step on every absorb so the sweeper is one index scan.
    auto_resolve_at = models.DateTimeField(null=True, blank=True)
    # When the escalation sweeper should next look at this alert; NULL once acknowledged, resolved,
    # suppressed, or when its policy has no further step.
    next_escalation_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(db_index=True)
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["fingerprint"],
                condition=Q(state__in=["OPEN", "ACKNOWLEDGED", "ESCALATED", "SUPPRESSED"]),
                name="alert_one_active_per_fingerprint",
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "-created_at"], name="alert_tenant_created"),
            models.Index(fields=["state", "severity"], name="alert_state_severity"),
            models.Index(fields=["fingerprint", "-created_at"], name="alert_fingerprint_recent"),
            models.Index(fields=["created_at"], name="alert_unacked_created",
                         condition=Q(state__in=["OPEN", "ESCALATED"])),
            # The three sweepers (escalate, auto-resolve, unsuppress) each scan one small partial index.
            models.Index(fields=["next_escalation_at"], name="alert_escalation_due",
                         condition=Q(state__in=["OPEN", "ESCALATED"], next_escalation_at__isnull=False)),
            models.Index(fields=["auto_resolve_at"], name="alert_auto_resolve_due",
                         condition=Q(state__in=["OPEN", "ACKNOWLEDGED", "ESCALATED", "SUPPRESSED"],
                                     auto_resolve_at__isnull=False)),
            models.Index(fields=["suppressed_until"], name="alert_suppression_due",
                         condition=Q(state="SUPPRESSED", suppressed_until__isnull=False)),
            models.Index(fields=["rule_key"], name="alert_rule_key"),
            # `assignee_id = x` / `IN (..)` imply IS NOT NULL, so lookups and the SET_NULL on delete use them.
            models.Index(fields=["assignee"], name="alert_assignee", condition=Q(assignee__isnull=False)),
            models.Index(fields=["silence"], name="alert_silence", condition=Q(silence__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} [{self.severity}] {self.title}"

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES


class TimelineEntry(models.Model):
    """One line of an alert's history: every transition, note, delivery attempt and escalation."""

    class Kind(models.TextChoices):
        CREATED = "created", "Created"
        OCCURRENCE = "occurrence", "New occurrences"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        RESOLVED = "resolved", "Resolved"
        REOPENED = "reopened", "Reopened"
        ASSIGNED = "assigned", "Assigned"
        NOTE = "note", "Note"
        SUPPRESSED = "suppressed", "Suppressed"
        UNSUPPRESSED = "unsuppressed", "Unsuppressed"
        ESCALATED = "escalated", "Escalated"
        DELIVERY = "delivery", "Delivery"
        FALLBACK = "fallback", "Fallback notification"

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="timeline", db_index=False)  # timeline_alert_at
    at = models.DateTimeField()
    kind = models.CharField(max_length=16, choices=Kind.choices)
    actor_label = models.CharField(max_length=200, blank=True)
    # Set for real users only (the system and tokens are labels): indexed where set, timeline_actor_user.
    actor_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", db_index=False)
    message = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["alert", "at"], name="timeline_alert_at"),
                   models.Index(fields=["actor_user"], name="timeline_actor_user", condition=Q(actor_user__isnull=False))]

    def __str__(self) -> str:
        return f"{self.at:%H:%M:%S} {self.kind} {self.message[:60]}"


class Silence(models.Model):
    """Matching new alerts are created SUPPRESSED and notify nobody while the silence is active.

    ``matchers`` is a dict of optional equality matchers: {"plugin": slug, "rule": rule_key,
    "severity": value, "labels": {name: value}}; an absent key matches anything.
    """

    tenant = models.ForeignKey("tenants.Tenant", null=True, blank=True, on_delete=models.CASCADE,
                               related_name="silences", help_text="Empty: every tenant (platform staff only)")
    matchers = models.JSONField(default=dict, blank=True)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    reason = models.CharField(max_length=500)
    created_by = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expired_at = models.DateTimeField(null=True, blank=True, help_text="Set when ended early")

    class Meta:
        ordering = ["-starts_at"]
        indexes = [models.Index(fields=["ends_at"], name="silence_ends_at")]

    def __str__(self) -> str:
        return f"silence {self.pk}: {self.reason[:40]}"

    def is_active_at(self, when) -> bool:
        """Active while starts_at <= when < ends_at and not ended early: time-based, no sweeper needed."""
        return self.expired_at is None and self.starts_at <= when < self.ends_at

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        from .matching import validate_matchers

        try:
            self.matchers = validate_matchers(self.matchers)
        except ValueError as exc:
            raise ValidationError({"matchers": str(exc)})
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValidationError({"ends_at": "must be after starts_at"})


class EscalationPolicy(models.Model):
    """How long an unacknowledged alert waits before escalating, and whom to tell.

    The most specific policy wins: (tenant, plugin, severity) over (tenant, severity) over
    (severity). ``steps``: [{"after_minutes": 5, "channels": ["webhook", "email", "sms"],
    "group": "operators"}]; the last step repeats up to ``repeat`` times.
    """

    tenant = models.ForeignKey("tenants.Tenant", null=True, blank=True, on_delete=models.CASCADE,
                               related_name="escalation_policies")
    plugin = models.ForeignKey("tenants.Plugin", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    severity = models.CharField(max_length=16, choices=Severity.choices)
    steps = models.JSONField(default=list)
    repeat = models.PositiveSmallIntegerField(default=0)
    enabled = models.BooleanField(default=True)

    class Meta:
        verbose_name_plural = "escalation policies"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "plugin", "severity"], name="escalation_policy_unique",
                                    nulls_distinct=False),
        ]

    def __str__(self) -> str:
        return f"{self.tenant or 'default'}/{self.plugin or '*'}/{self.severity}"

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        from .policies import validate_policy_steps

        try:
            self.steps = validate_policy_steps(tenant_id=self.tenant_id, steps=self.steps, repeat=self.repeat)
        except ValueError as exc:
            raise ValidationError({"steps": str(exc)})
        if self.plugin_id and self.tenant_id and self.plugin.tenant_id != self.tenant_id:
            raise ValidationError({"plugin": "the plugin belongs to another tenant"})


class OpenedCount(models.Model):
    """Alerts opened per tenant per ``apps.alerts.opened.SLOT_SECONDS`` slot: the storm guard's
    per-minute budget, read from a handful of rows instead of counting the minute's alerts (a count
    that grew with the storm it guards: 90 ms a batch at 1,000 new alerts/s). Written after the
    transaction that opened the alerts commits; slots older than the window are deleted as they
    expire."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, db_index=False)
    slot = models.BigIntegerField()  # unix time // SLOT_SECONDS
    n = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "slot"], name="opened_count_per_slot")]
        indexes = [models.Index(fields=["slot"], name="opened_count_slot")]

    def __str__(self) -> str:
        return f"tenant {self.tenant_id} slot {self.slot}: {self.n}"
