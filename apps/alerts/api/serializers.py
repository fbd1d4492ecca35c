"""Input validation and output shapes of the alerts API. Inputs are plain Serializers that hand
clean values to services; outputs are read-only. Add a field to AlertDetailSerializer (e.g.
``evidence`` or ``deliveries`` from another app's selector) and it appears in the API and schema."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.core.serializers import RejectUnknownFields
from apps.core.vocabulary import parse_period

from ..matching import validate_matchers
from ..models import Alert, AlertState, Severity, Silence, TimelineEntry
from ..payload import alert_payload, console_url
from ..selectors import ORDERINGS, AlertFilters


class CommaChoiceField(serializers.CharField):
    """'OPEN,ESCALATED' -> ['OPEN', 'ESCALATED'], each checked against choices."""

    def __init__(self, *, choices, **kwargs):
        self.valid = list(choices)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if isinstance(data, str):
            items = [i.strip() for i in data.split(",") if i.strip()]
        elif isinstance(data, list) and all(isinstance(i, str) for i in data):
            items = data
        else:  # a JSON body may carry any type here (true, 3, {...}): a 400, not a TypeError
            raise serializers.ValidationError("expected a comma-separated string or a list of strings")
        bad = [i for i in items if i not in self.valid]
        if bad:
            raise serializers.ValidationError(f"unknown value(s) {', '.join(map(str, bad))}; "
                                              f"expected {', '.join(self.valid)}")
        return items


class AlertFilterSerializer(serializers.Serializer):
    """Query parameters of GET /alerts and the body of POST /alerts/ack-all."""

    state = CommaChoiceField(choices=AlertState.values, required=False,
                             help_text="Comma-separated states, e.g. OPEN,ESCALATED")
    severity = CommaChoiceField(choices=Severity.values, required=False, help_text="Comma-separated severities")
    tenant = serializers.SlugField(required=False, help_text="Tenant slug (platform tokens)")
    plugin = serializers.SlugField(required=False, help_text="Plugin slug")
    rule = serializers.CharField(required=False, max_length=100, help_text="Rule key")
    assignee = serializers.CharField(required=False, max_length=150, help_text="Username, or 'none' for unassigned")
    since = serializers.DateTimeField(required=False, help_text="Created at or after (RFC 3339)")
    until = serializers.DateTimeField(required=False, help_text="Created before (RFC 3339)")
    q = serializers.CharField(required=False, max_length=200, help_text="Search in title and summary")

    def validate(self, attrs):
        if attrs.get("since") and attrs.get("until") and attrs["until"] <= attrs["since"]:
            raise serializers.ValidationError({"until": "must be after since"})
        return attrs

    def to_filters(self) -> AlertFilters:
        d = self.validated_data
        return AlertFilters(states=d.get("state", []), severities=d.get("severity", []), tenant=d.get("tenant"),
                            plugin=d.get("plugin"), rule=d.get("rule"), assignee=d.get("assignee"),
                            since=d.get("since"), until=d.get("until"), q=d.get("q"))


class AlertListQuerySerializer(AlertFilterSerializer):
    ordering = serializers.ChoiceField(choices=[o for f in ORDERINGS for o in (f, f"-{f}")], required=False,
                                       help_text="Sort field, '-' for descending (default -created_at)")
    cursor = serializers.CharField(required=False, help_text="Opaque cursor from next/previous")
    limit = serializers.IntegerField(required=False, min_value=1, max_value=500, help_text="Page size (default 50)")


class AlertSerializer(serializers.ModelSerializer):
    tenant = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    plugin = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    assignee = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    url = serializers.SerializerMethodField()

    class Meta:
        model = Alert
        fields = ["id", "url", "tenant", "plugin", "rule_key", "rule_version", "category", "severity", "state",
                  "delivery_state", "title", "summary", "count", "first_seen", "last_seen", "escalation_level",
                  "assignee", "acknowledged_at", "acknowledged_by", "resolved_at", "resolved_by", "suppressed_until",
                  "suppressed_reason", "reopened_count", "labels", "created_at", "updated_at"]
        read_only_fields = fields

    def get_url(self, alert: Alert) -> str:
        return console_url(alert.pk)


class TimelineEntrySerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_label", read_only=True)

    class Meta:
        model = TimelineEntry
        fields = ["id", "at", "kind", "actor", "message", "data"]
        read_only_fields = fields


class AlertDetailSerializer(AlertSerializer):
    payload = serializers.SerializerMethodField(help_text="Exactly what webhooks receive as `data`")
    timeline = serializers.SerializerMethodField()

    class Meta(AlertSerializer.Meta):
        fields = AlertSerializer.Meta.fields + ["recommended_action", "window_seconds", "trace_ids", "samples",
                                                "group_key", "auto_resolve_seconds", "payload", "timeline"]
        read_only_fields = fields

    def get_payload(self, alert: Alert) -> dict:
        return alert_payload(alert)

    def get_timeline(self, alert: Alert) -> list[dict]:
        entries = self.context.get("timeline")
        return TimelineEntrySerializer(entries if entries is not None else alert.timeline.all(), many=True).data


class NoteInSerializer(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, max_length=10_000, default="")


class ResolveInSerializer(RejectUnknownFields, NoteInSerializer):
    # Strict: a misspelt "tiket" would skip the ticket check and resolve the alert anyway.
    reason = serializers.CharField(required=False, allow_blank=True, max_length=2_000, default="",
                                   help_text="Why (e.g. 'regression passed'); goes into the timeline and the ticket comment")
    ticket = serializers.CharField(required=False, max_length=100,
                                   help_text="The alert's ticket key (e.g. OPS-12); refused (409) when it is not the alert's")


class AssignInSerializer(serializers.Serializer):
    assignee = serializers.CharField(allow_null=True, max_length=150,
                                     help_text="Username; null to unassign. Tokens cannot 'take' ownership.")


class NoteCreateSerializer(serializers.Serializer):
    text = serializers.CharField(max_length=10_000)


@extend_schema_field({"oneOf": [{"type": "string", "example": "2h"}, {"type": "integer", "example": 7200}]})
class DurationField(serializers.Field):
    """'30m', '2h', '1d' or seconds (int)."""

    def to_internal_value(self, data):
        try:
            return parse_period(data)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc

    def to_representation(self, value):
        return int(value.total_seconds())


class SuppressInSerializer(serializers.Serializer):
    duration = DurationField(help_text="e.g. 30m, 2h, 1d, or seconds; at most 30 days")
    reason = serializers.CharField(max_length=500)


class AckAllInSerializer(RejectUnknownFields, AlertFilterSerializer):
    note = serializers.CharField(required=False, allow_blank=True, max_length=10_000, default="")


class AckAllOutSerializer(serializers.Serializer):
    acknowledged = serializers.IntegerField()
    ids = serializers.ListField(child=serializers.IntegerField())
    limit = serializers.IntegerField(help_text="At most this many per call; call again if acknowledged == limit")


class SilenceSerializer(serializers.ModelSerializer):
    tenant = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    status = serializers.SerializerMethodField()

    class Meta:
        model = Silence
        fields = ["id", "tenant", "matchers", "starts_at", "ends_at", "reason", "created_by", "created_at",
                  "expired_at", "status"]
        read_only_fields = fields

    def get_status(self, silence: Silence) -> str:
        now = self.context["now"]
        if silence.expired_at is not None or silence.ends_at <= now:
            return "expired"
        return "active" if silence.starts_at <= now else "pending"


class MatchersField(serializers.JSONField):
    def to_internal_value(self, data):
        try:
            return validate_matchers(super().to_internal_value(data))
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc


class SilenceInSerializer(RejectUnknownFields, serializers.Serializer):
    tenant = serializers.SlugField(required=False, allow_null=True,
                                   help_text="Tenant slug; platform tokens may send null for every tenant")
    matchers = MatchersField(required=False, default=dict,
                             help_text='{"plugin": slug, "rule": key, "severity": level, "labels": {k: v}}')
    starts_at = serializers.DateTimeField(required=False, help_text="Default: now")
    ends_at = serializers.DateTimeField(required=False)
    duration = DurationField(required=False, help_text="Instead of ends_at: e.g. 2h")
    reason = serializers.CharField(max_length=500)

    def validate(self, attrs):
        if ("ends_at" in attrs) == ("duration" in attrs):
            raise serializers.ValidationError({"ends_at": "give exactly one of ends_at and duration"})
        return attrs


class SilencePreviewInSerializer(RejectUnknownFields, serializers.Serializer):
    tenant = serializers.SlugField(required=False, allow_null=True)
    matchers = MatchersField(required=False, default=dict)


class StatisticsQuerySerializer(serializers.Serializer):
    hours = serializers.IntegerField(required=False, default=24, min_value=1, max_value=24 * 90)
    tenant = serializers.SlugField(required=False, help_text="Tenant slug (platform tokens)")


class StatisticsSerializer(serializers.Serializer):
    hours = serializers.IntegerField()
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    alerts = serializers.DictField(help_text="total, by_state, by_severity, acknowledged, escalated")
    ack_rate = serializers.FloatField(allow_null=True)
    mtta_seconds = serializers.FloatField(allow_null=True)
    mttr_seconds = serializers.FloatField(allow_null=True)
    top_plugins = serializers.ListField(child=serializers.DictField())
    top_rules = serializers.ListField(child=serializers.DictField())
    delivery = serializers.DictField(allow_null=True, help_text="Delivery figures (filled by the delivery app)")
