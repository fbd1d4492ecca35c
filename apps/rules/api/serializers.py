"""Request/response shapes of the rules API. Rule bodies are validated by ``apps.rules.spec``
(the pack validator), not here, so the API, the admin and sync_rules give the same messages;
these serializers document the shapes for OpenAPI and check the envelope only."""
from __future__ import annotations

from rest_framework import serializers

from apps.core.vocabulary import SEVERITIES


class MatchSerializer(serializers.Serializer):
    levels = serializers.ListField(child=serializers.CharField(), required=False)
    keywords = serializers.ListField(child=serializers.CharField(), required=False)
    patterns = serializers.ListField(child=serializers.CharField(), required=False, help_text="RE2 syntax")


class ThresholdSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    window = serializers.CharField(help_text='Duration: "30s", "5m", "1h", "1h30m" or seconds')


class OverrideBodySerializer(serializers.Serializer):
    threshold = serializers.DictField(required=False, help_text="{count?, window?}")
    severity = serializers.CharField(required=False)
    enabled = serializers.BooleanField(required=False)
    cooldown = serializers.CharField(required=False)


class PackOverrideSerializer(OverrideBodySerializer):
    tenant = serializers.CharField()


class RuleSpecSerializer(serializers.Serializer):
    """One rule in pack format (one entry of ``rules:`` in a YAML pack)."""

    id = serializers.CharField()
    name = serializers.CharField()
    category = serializers.CharField()
    enabled = serializers.BooleanField(required=False, default=True)
    description = serializers.CharField(required=False)
    match = MatchSerializer()
    threshold = ThresholdSerializer()
    group_by = serializers.ListField(child=serializers.CharField(), required=False)
    severity = serializers.ChoiceField(choices=SEVERITIES)
    cooldown = serializers.CharField(required=False)
    auto_resolve = serializers.CharField(required=False)
    recommended_action = serializers.CharField(required=False)
    labels = serializers.DictField(child=serializers.CharField(), required=False)
    overrides = PackOverrideSerializer(many=True, required=False)


class RuleSerializer(serializers.Serializer):
    key = serializers.CharField()
    version = serializers.IntegerField()
    enabled = serializers.BooleanField()
    source = serializers.CharField()
    updated_at = serializers.DateTimeField()
    updated_by = serializers.CharField()
    spec = RuleSpecSerializer(help_text="For a tenant token: the rule as that tenant sees it (overrides applied)")
    override = OverrideBodySerializer(allow_null=True, required=False,
                                      help_text="The tenant's own override (tenant tokens only)")


class RevisionSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    change = serializers.CharField()
    source = serializers.CharField()
    changed_by = serializers.CharField()
    changed_at = serializers.DateTimeField()
    spec = RuleSpecSerializer()


class SyncReportSerializer(serializers.Serializer):
    created = serializers.ListField(child=serializers.CharField())
    updated = serializers.ListField(child=serializers.CharField())
    unchanged = serializers.ListField(child=serializers.CharField())
    disabled = serializers.ListField(child=serializers.CharField())


class DryRunRequestSerializer(serializers.Serializer):
    key = serializers.CharField(required=False, help_text="Test a stored rule (as the tenant sees it)")
    rule = serializers.DictField(required=False, help_text="Test an unsaved rule (pack format)")
    events = serializers.ListField(child=serializers.DictField(), required=False,
                                   help_text="Events as POSTed to /logs (tenant_id is ignored)")
    lines = serializers.CharField(required=False, help_text="NDJSON or '<LEVEL> <message>' lines")
    tenant = serializers.CharField(required=False, help_text="Platform tokens: whose overrides apply")

    def validate(self, data):
        if "key" in data and "rule" in data:
            raise serializers.ValidationError({"rule": "give either key or rule, not both"})
        if ("events" in data) == ("lines" in data):
            raise serializers.ValidationError({"events": "give exactly one of events or lines"})
        return data


class DryRunGroupSerializer(serializers.Serializer):
    rule = serializers.CharField()
    group_key = serializers.DictField(child=serializers.CharField())
    matches = serializers.IntegerField()
    threshold = serializers.IntegerField()
    window_seconds = serializers.IntegerField()
    would_fire = serializers.BooleanField()
    fires_at_index = serializers.IntegerField(allow_null=True)


class DryRunEventSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    level = serializers.CharField()
    message = serializers.CharField()
    rules = serializers.ListField(child=serializers.CharField())


class DryRunResponseSerializer(serializers.Serializer):
    events = DryRunEventSerializer(many=True)
    groups = DryRunGroupSerializer(many=True)
    errors = serializers.ListField(child=serializers.DictField())
