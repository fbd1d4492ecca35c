"""Detection rules as rows: the rule itself, per-tenant overrides, history, and window state.

The source of truth of a rule is ``LogRule.spec``: the canonical mapping written by
``apps.rules.spec.rule_to_dict`` (the same shape as one entry of a YAML pack, so export is a
dump of these dicts). The other columns are denormalized from it for the admin list and filters;
only ``apps.rules.services`` writes them, always together with the spec.

Overrides come in two layers: ``overrides`` inside the spec (written in the pack by governance)
and ``RuleOverride`` rows (set by a tenant through the API or by staff in the admin). A row wins
over the pack's override for the same tenant, field by field.
"""
from __future__ import annotations

from django.db import models


class LogRule(models.Model):
    key = models.CharField(max_length=64, unique=True, help_text="The pack's rule id")
    name = models.CharField(max_length=200)
    category = models.CharField(max_length=64)
    description = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    severity = models.CharField(max_length=16)
    threshold_count = models.PositiveIntegerField()
    window_seconds = models.PositiveIntegerField()
    cooldown_seconds = models.PositiveIntegerField(default=0)
    spec = models.JSONField(help_text="Canonical rule mapping (pack format)")
    version = models.PositiveIntegerField(default=1)
    source = models.CharField(max_length=200, blank=True, help_text='"pack:<dir>/<file>", "admin" or "api"')
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    updated_by = models.CharField(max_length=200, blank=True)
    # "log", a log kind (spike/log_anomaly) or a metric kind (threshold/anomaly/absence): all but "log"
    # are evaluated on a schedule, claimed by a conditional UPDATE of next_eval_at (apps.rules.metric_eval).
    kind = models.CharField(max_length=16, default="log")
    next_eval_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["key"]
        indexes = [models.Index(fields=["next_eval_at"], name="logrule_metric_due",
                                condition=~models.Q(kind="log"))]

    def __str__(self) -> str:
        return self.key


class RuleOverride(models.Model):
    """A tenant's own changes to a rule; ``None`` keeps the rule's (or the pack override's) value."""

    rule = models.ForeignKey(LogRule, on_delete=models.CASCADE, related_name="tenant_overrides")
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="rule_overrides")
    threshold_count = models.PositiveIntegerField(null=True, blank=True)
    window_seconds = models.PositiveIntegerField(null=True, blank=True)
    severity = models.CharField(max_length=16, blank=True, default="")
    cooldown_seconds = models.PositiveIntegerField(null=True, blank=True)
    enabled = models.BooleanField(null=True, blank=True)
    updated_at = models.DateTimeField()
    updated_by = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["rule__key", "tenant__slug"]
        constraints = [models.UniqueConstraint(fields=["rule", "tenant"], name="rule_override_unique")]

    def __str__(self) -> str:
        return f"{self.rule_id}@{self.tenant_id}"


class RuleRevision(models.Model):
    """One row per rule version: what the rule was, who changed it, and how."""

    class Change(models.TextChoices):
        CREATED = "created", "Created"
        UPDATED = "updated", "Updated"
        DISABLED = "disabled", "Disabled"

    rule = models.ForeignKey(LogRule, on_delete=models.CASCADE, related_name="revisions")
    version = models.PositiveIntegerField()
    spec = models.JSONField()
    change = models.CharField(max_length=16, choices=Change.choices)
    source = models.CharField(max_length=200, blank=True)
    changed_by = models.CharField(max_length=200, blank=True)
    changed_at = models.DateTimeField()

    class Meta:
        ordering = ["rule", "-version"]
        constraints = [models.UniqueConstraint(fields=["rule", "version"], name="rule_revision_unique")]

    def __str__(self) -> str:
        return f"{self.rule_id} v{self.version} {self.change}"


class WindowState(models.Model):
    """The sliding window of one (rule, tenant, group key); locked per batch by the engine.

    ``group_hash`` digests (rule_key, tenant slug, group values), so the engine looks rows up and
    locks them by ``group_hash__in`` alone; ``state`` is an ``apps.rules.windows`` state dict.
    """

    rule_key = models.CharField(max_length=64)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    group_hash = models.CharField(max_length=64)
    group_key = models.JSONField(default=dict)
    state = models.JSONField(default=dict)
    last_fired_at = models.DateTimeField(null=True, blank=True)
    # The alert this group last fired, as a plain id: no foreign key constraint and no index. Alerts
    # are only deleted with their tenant, whose windows go with them; should an id's alert be gone
    # anyway, it counts as an alert that ended (a threshold rule's absorb finds nothing and the group
    # is judged afresh; a spike rule waits for the spike to end, as after a hand resolve). Nothing
    # looks windows up by alert. Without them, writing the id checks no alert row (one KEY SHARE
    # lock per window) and the window's rewrite changes no indexed column, so PostgreSQL can do it as
    # a HOT update.
    alert = models.ForeignKey("alerts.Alert", null=True, blank=True, on_delete=models.DO_NOTHING, related_name="+",
                              db_constraint=False, db_index=False)
    updated_at = models.DateTimeField()

    class Meta:
        # Led by group_hash, so the one index serves the engine's lookup (``group_hash = ANY(..)``)
        # as well as uniqueness. No index on updated_at (nothing reads by it): the engine rewrites
        # state and updated_at of every window it counts, and with no indexed column changed
        # PostgreSQL can do that as a HOT update, without a new entry in each index (the table's
        # fillfactor, rules 0009, leaves the page room for it).
        constraints = [
            models.UniqueConstraint(fields=["group_hash", "rule_key", "tenant"], name="window_state_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.rule_key} {self.group_key}"


class RulesetVersion(models.Model):
    """Single row (pk=1) bumped in the transaction of every rule or override change.

    Workers compare it with the version their compiled rule sets were built from (one small
    query per batch) and recompile only when it moved.
    """

    version = models.BigIntegerField(default=0)
    # Random per bump: a restored database or a rolled-back test can reuse a version number, and a
    # worker must not mistake different rules for the ones it compiled under that number.
    stamp = models.CharField(max_length=32, blank=True, default="")

    def __str__(self) -> str:
        return f"ruleset v{self.version}"


class MetricSeries(models.Model):
    """One (tenant, metric name, label set). ``labels_hash`` digests name and sorted labels, so
    intake finds a series by one indexed equality; the per-tenant count is capped by
    METRICS_MAX_SERIES_PER_TENANT (apps.rules.metrics)."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=200)
    labels_hash = models.CharField(max_length=64)
    labels = models.JSONField(default=dict)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "labels_hash"], name="rules_metric_series_unique")]
        indexes = [models.Index(fields=["name", "tenant"], name="rules_metric_series_name")]

    def __str__(self) -> str:
        return f"{self.name}{self.labels}"


class MetricRollup(models.Model):
    """One series' samples within one minute: enough for avg/min/max/sum/count/last and a sigma.

    Storage grows with series x minutes, never with samples; rules read these rows only.
    """

    series = models.ForeignKey(MetricSeries, on_delete=models.CASCADE, related_name="rollups")
    minute = models.DateTimeField(help_text="Start of the minute (UTC)")
    count = models.PositiveIntegerField()
    sum = models.FloatField()
    min = models.FloatField()
    max = models.FloatField()
    sumsq = models.FloatField()
    last = models.FloatField()
    last_ts = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["series", "minute"], name="rules_metric_rollup_unique")]
        indexes = [models.Index(fields=["minute"], name="rules_metric_rollup_minute")]

    def __str__(self) -> str:
        return f"{self.series_id}@{self.minute:%Y-%m-%d %H:%M}"


class MetricRuleState(models.Model):
    """Where one (metric rule, tenant, group) stands between evaluations."""

    rule_key = models.CharField(max_length=64)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    group_hash = models.CharField(max_length=64)
    group_key = models.JSONField(default=dict)
    consecutive = models.PositiveIntegerField(default=0, help_text="Violating evaluations in a row")
    pending_since = models.DateTimeField(null=True, blank=True, help_text="First violation of this streak")
    last_value = models.FloatField(null=True, blank=True)
    alert = models.ForeignKey("alerts.Alert", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rule_key", "tenant", "group_hash"],
                                               name="metric_rule_state_unique")]

    def __str__(self) -> str:
        return f"{self.rule_key} {self.group_key}"


class LogRateGroup(models.Model):
    """One (log anomaly rule, tenant, plugin) whose matching events are counted per minute.

    ``first_minute`` is when the rule first counted it: baseline minutes before it are unknown,
    not zero, so a plugin that is new today is not judged against days it did not exist.
    """

    rule_key = models.CharField(max_length=64)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    plugin = models.CharField(max_length=200)
    first_minute = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rule_key", "tenant", "plugin"], name="log_rate_group_unique")]

    def __str__(self) -> str:
        return f"{self.rule_key} {self.tenant_id}/{self.plugin}"


class LogRate(models.Model):
    """Matching events of one ``LogRateGroup`` within one minute (a minute without a row had none)."""

    group = models.ForeignKey(LogRateGroup, on_delete=models.CASCADE, related_name="minutes")
    minute = models.DateTimeField(help_text="Start of the minute (UTC)")
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["group", "minute"], name="log_rate_unique")]
        indexes = [models.Index(fields=["minute"], name="log_rate_minute")]

    def __str__(self) -> str:
        return f"{self.group_id}@{self.minute:%Y-%m-%d %H:%M}: {self.count}"
