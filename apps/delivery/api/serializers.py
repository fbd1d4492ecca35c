"""Shapes of the webhook and fallback API. Secrets appear only in the create/rotate responses."""
from __future__ import annotations

from rest_framework import serializers

from apps.core.vocabulary import EVENT_TYPES, SEVERITIES

from ..models import Delivery, DeliveryAttempt, WebhookEndpoint


class EndpointSerializer(serializers.ModelSerializer):
    tenant = serializers.CharField(source="tenant.slug", read_only=True)

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "tenant", "url", "description", "min_severity", "event_types", "enabled", "disabled_reason",
                  "failure_streak", "downgraded_at", "next_probe_at", "previous_secret_expires_at", "created_at",
                  "updated_at"]
        read_only_fields = fields


class EndpointWithSecretSerializer(EndpointSerializer):
    secret = serializers.CharField(help_text="The signing secret (whsec_...). Shown only in this response.")

    class Meta(EndpointSerializer.Meta):
        fields = EndpointSerializer.Meta.fields + ["secret"]
        read_only_fields = fields


class EndpointCreateSerializer(serializers.Serializer):
    url = serializers.CharField(max_length=2000)
    description = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    min_severity = serializers.ChoiceField(choices=SEVERITIES, required=False, default="info")
    event_types = serializers.ListField(child=serializers.ChoiceField(choices=EVENT_TYPES), required=False,
                                        allow_empty=False, default=lambda: list(EVENT_TYPES))
    tenant = serializers.CharField(required=False, help_text="Tenant slug; platform tokens only.")


class EndpointUpdateSerializer(serializers.Serializer):
    url = serializers.CharField(max_length=2000, required=False)
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)
    min_severity = serializers.ChoiceField(choices=SEVERITIES, required=False)
    event_types = serializers.ListField(child=serializers.ChoiceField(choices=EVENT_TYPES), required=False,
                                        allow_empty=False)
    enabled = serializers.BooleanField(required=False)


class SelfTestSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    status_code = serializers.IntegerField(allow_null=True)
    latency_ms = serializers.IntegerField()
    error = serializers.CharField(allow_blank=True)


class RotateSerializer(serializers.Serializer):
    secret = serializers.CharField()
    previous_secret_valid_until = serializers.DateTimeField()


class AttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = ["number", "channel", "started_at", "latency_ms", "status_code", "success", "error",
                  "response_excerpt"]


class DeliverySerializer(serializers.ModelSerializer):
    attempt_log = AttemptSerializer(many=True, read_only=True)

    class Meta:
        model = Delivery
        fields = ["id", "alert", "endpoint", "channel", "event_type", "msg_id", "recipients", "state", "attempts",
                  "next_attempt_at", "last_error", "last_status_code", "created_at", "downgraded_at",
                  "delivered_at", "finished_at", "attempt_log"]


class FallbackRequestSerializer(serializers.Serializer):
    alert_id = serializers.IntegerField()
