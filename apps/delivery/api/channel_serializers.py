"""Shapes of the channels and policies API (for the answers and the OpenAPI document).

Requests are checked by ``apps.delivery.channel_services`` (422 naming the field); the request
serializers here only document them. Channel secrets never appear in any answer: ``secret_keys``
names which secret config keys are set, never their values.
"""
from __future__ import annotations

from rest_framework import serializers

from ..models import CHANNEL_KINDS, NotificationChannel, NotificationPolicy
from ..secrets import channel_secrets


class ChannelSerializer(serializers.ModelSerializer):
    tenant = serializers.CharField(source="tenant.slug", read_only=True)
    secret_keys = serializers.SerializerMethodField(help_text="Secret config keys that are set (values never shown)")

    class Meta:
        model = NotificationChannel
        fields = ["id", "tenant", "kind", "name", "config", "secret_keys", "templates", "rate_limit_per_minute",
                  "enabled", "failure_streak", "downgraded_at", "created_at", "updated_at"]
        read_only_fields = fields

    def get_secret_keys(self, obj: NotificationChannel) -> list[str]:
        return sorted(channel_secrets(obj))


class ChannelWithPreviewSerializer(ChannelSerializer):
    preview = serializers.DictField(help_text="The templates rendered for the tenant's newest alert (or a sample)")

    class Meta(ChannelSerializer.Meta):
        fields = ChannelSerializer.Meta.fields + ["preview"]
        read_only_fields = fields


class ChannelCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=[str(k) for k in CHANNEL_KINDS])
    name = serializers.SlugField(max_length=100)
    config = serializers.DictField(help_text="Per kind (secret keys are stored encrypted and never shown): "
                                             "email recipients; sms numbers; slack/teams webhook_url; "
                                             "pagerduty routing_key, base_url; opsgenie api_key, base_url")
    templates = serializers.DictField(child=serializers.CharField(), required=False, help_text="title / body overrides")
    rate_limit_per_minute = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    enabled = serializers.BooleanField(required=False, default=True)
    tenant = serializers.CharField(required=False, help_text="Tenant slug; platform tokens only.")


class ChannelUpdateSerializer(serializers.Serializer):
    name = serializers.SlugField(max_length=100, required=False)
    config = serializers.DictField(required=False, help_text="Merged into the stored config; omitted secrets are kept")
    templates = serializers.DictField(child=serializers.CharField(), required=False)
    rate_limit_per_minute = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    enabled = serializers.BooleanField(required=False)


class ChannelTestSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    status_code = serializers.IntegerField(allow_null=True)
    latency_ms = serializers.IntegerField()
    error = serializers.CharField(allow_blank=True)
    response = serializers.CharField(allow_blank=True, help_text="The start of the far side's answer")


class PolicySerializer(serializers.ModelSerializer):
    tenant = serializers.CharField(source="tenant.slug", read_only=True)
    channels = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    fallback_channels = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = NotificationPolicy
        fields = ["id", "tenant", "name", "position", "enabled", "matchers", "channels", "webhooks",
                  "continue_matching", "group_by", "group_wait_seconds", "group_interval_seconds",
                  "repeat_interval_seconds", "fallback_channels", "created_at", "updated_at"]
        read_only_fields = fields


class PolicyWriteSerializer(serializers.Serializer):
    name = serializers.SlugField(max_length=100)
    position = serializers.IntegerField(required=False, min_value=0, help_text="Ascending; default: last")
    enabled = serializers.BooleanField(required=False)
    matchers = serializers.DictField(required=False, help_text="severity_at_least, severities, categories, plugins, "
                                                               "rules, sources, labels, labels_regex, active")
    channels = serializers.ListField(child=serializers.IntegerField(), required=False)
    webhooks = serializers.BooleanField(required=False)
    continue_matching = serializers.BooleanField(required=False)
    group_by = serializers.ListField(child=serializers.CharField(), required=False)
    group_wait_seconds = serializers.IntegerField(required=False, min_value=1)
    group_interval_seconds = serializers.IntegerField(required=False, min_value=1)
    repeat_interval_seconds = serializers.IntegerField(required=False, min_value=1)
    fallback_channels = serializers.ListField(child=serializers.IntegerField(), required=False)
    tenant = serializers.CharField(required=False, help_text="Tenant slug; platform tokens only (create).")


class ReorderSerializer(serializers.Serializer):
    order = serializers.ListField(child=serializers.IntegerField(), help_text="Every policy id, in the new order")
    tenant = serializers.CharField(required=False)


class PreviewRequestSerializer(serializers.Serializer):
    alert_id = serializers.IntegerField(required=False)
    alert = serializers.DictField(required=False, help_text="An alert-like object: severity, category, plugin, "
                                                            "rule {key}, source, labels")
    at = serializers.DateTimeField(required=False, help_text="When (for time-of-day matchers); default now")
    tenant = serializers.CharField(required=False, help_text="Tenant slug; platform tokens with an alert body")


class PreviewSerializer(serializers.Serializer):
    policies = serializers.ListField(child=serializers.CharField())
    default_policy = serializers.BooleanField()
    webhooks = serializers.ListField(child=serializers.DictField())
    channels = serializers.ListField(child=serializers.DictField())


class ImportReportSerializer(serializers.Serializer):
    created = serializers.ListField(child=serializers.CharField())
    updated = serializers.ListField(child=serializers.CharField())
    unchanged = serializers.ListField(child=serializers.CharField())
    deleted = serializers.ListField(child=serializers.CharField())
