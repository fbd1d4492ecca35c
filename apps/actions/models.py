"""Ticket bridges and tickets, remediation actions and their runs (DESIGN 11).

Secrets (tracker API tokens, action signing secrets) are stored encrypted with
``FIELD_ENCRYPTION_KEYS`` (``apps.delivery.secrets.seal``) and never shown after creation.
"""
from __future__ import annotations

from django.db import models
from django.db.models import Q

from apps.core.vocabulary import Severity


class TicketBridge(models.Model):
    """Where a tenant's tickets go: a Jira-shaped tracker or a generic JSON endpoint (one per tenant)."""

    class Kind(models.TextChoices):
        JIRA = "jira", "Jira"
        GENERIC = "generic", "Generic JSON"

    class Auth(models.TextChoices):
        NONE = "none", "None"
        BASIC = "basic", "Basic (email + API token)"
        BEARER = "bearer", "Bearer token"

    tenant = models.OneToOneField("tenants.Tenant", on_delete=models.CASCADE, related_name="ticket_bridge")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    base_url = models.URLField(max_length=500, help_text="Jira: site URL; generic: the URL tickets are POSTed to")
    auth = models.CharField(max_length=16, choices=Auth.choices, default=Auth.NONE)
    username = models.CharField(max_length=200, blank=True, help_text="Basic auth user (Jira: account email)")
    secret_encrypted = models.TextField(blank=True, help_text="API token, encrypted at rest; write-only")
    # Jira
    project_key = models.CharField(max_length=50, blank=True)
    issue_type = models.CharField(max_length=50, default="Bug")
    priorities = models.JSONField(default=dict, blank=True, help_text="severity -> Jira priority name")
    labels = models.JSONField(default=list, blank=True)
    transition_id = models.CharField(max_length=20, blank=True, help_text="Jira transition applied on resolve")
    # Generic
    body_template = models.TextField(blank=True, help_text="Django template rendering the JSON body")
    key_path = models.CharField(max_length=200, blank=True, help_text="Dotted path of the key in the response")
    url_path = models.CharField(max_length=200, blank=True, help_text="Dotted path of the ticket URL")
    comment_url_template = models.CharField(max_length=500, blank=True,
                                            help_text="URL of the comment POST, e.g. https://t.example/{{ key }}/comments")
    # Policy
    auto_create_severities = models.JSONField(default=list, blank=True)
    close_on_resolve = models.BooleanField(default=False)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.tenant_id}/{self.kind}"


class Ticket(models.Model):
    """One external ticket per alert. PENDING while a worker holds the creation claim (``lease_until``)."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"
        FAILED = "failed", "Failed"

    alert = models.OneToOneField("alerts.Alert", on_delete=models.CASCADE, related_name="ticket")
    bridge = models.ForeignKey(TicketBridge, null=True, on_delete=models.SET_NULL, related_name="tickets")
    key = models.CharField(max_length=100, blank=True)
    url = models.URLField(max_length=500, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    lease_until = models.DateTimeField(null=True, blank=True)
    # The alert.resolved_at the resolve comment was posted for (a reopened, re-resolved alert gets another).
    synced_resolved_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["state"], name="ticket_open", condition=Q(state="open"))]

    def __str__(self) -> str:
        return self.key or f"ticket for alert {self.alert_id}"


class RemediationAction(models.Model):
    """A signed HTTP call to a tenant's runbook endpoint, run from an alert by an operator or a policy."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="remediation_actions")
    name = models.SlugField(max_length=100)
    description = models.CharField(max_length=300, blank=True)
    url = models.URLField(max_length=500)
    body_template = models.TextField(help_text="Django template over the alert payload rendering a JSON body")
    allowed_severities = models.JSONField(default=list, blank=True, help_text="Empty: every severity")
    requires_confirmation = models.BooleanField(default=True)
    secret_encrypted = models.TextField(help_text="whsec_ signing secret, encrypted at rest; write-only")
    enabled = models.BooleanField(default=True)
    auto_run_severities = models.JSONField(default=list, blank=True, help_text="Run by itself for new alerts of these")
    max_runs_per_hour = models.PositiveIntegerField(default=10, help_text="Automatic runs per hour (rate limit)")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="action_name_unique_per_tenant")]

    def __str__(self) -> str:
        return self.name


class ActionRun(models.Model):
    """One run (or skipped automatic run) of an action on an alert: what was sent and what came back."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    class Trigger(models.TextChoices):
        MANUAL = "manual", "Manual"
        AUTO = "auto", "Automatic"

    action = models.ForeignKey(RemediationAction, on_delete=models.CASCADE, related_name="runs")
    alert = models.ForeignKey("alerts.Alert", on_delete=models.CASCADE, related_name="action_runs")
    trigger = models.CharField(max_length=8, choices=Trigger.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    actor_label = models.CharField(max_length=200, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # An automatic run is claimed by inserting it: two sweeps never run one action twice on an alert.
            models.UniqueConstraint(fields=["action", "alert"], condition=Q(trigger="auto"), name="action_run_auto_once"),
        ]
        indexes = [models.Index(fields=["action", "created_at"], name="action_run_recent")]

    def __str__(self) -> str:
        return f"{self.action_id}@{self.alert_id}: {self.status}"


SEVERITY_VALUES = tuple(Severity.values)
