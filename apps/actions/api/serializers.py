"""Shapes of the tickets and remediation API. Secrets go in, never out (an action's generated
secret is added to the creation answer once, by the view)."""
from __future__ import annotations

from rest_framework import serializers

from ..models import ActionRun, RemediationAction, Ticket, TicketBridge


class TicketBridgeSerializer(serializers.ModelSerializer):
    tenant = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    has_secret = serializers.SerializerMethodField()

    class Meta:
        model = TicketBridge
        fields = ["id", "tenant", "kind", "base_url", "auth", "username", "has_secret", "project_key", "issue_type",
                  "priorities", "labels", "transition_id", "body_template", "key_path", "url_path",
                  "comment_url_template", "auto_create_severities", "close_on_resolve", "enabled", "created_at",
                  "updated_at"]

    def get_has_secret(self, obj: TicketBridge) -> bool:
        return bool(obj.secret_encrypted)


class TicketBridgeInSerializer(serializers.Serializer):
    tenant = serializers.SlugField(required=False, help_text="Tenant slug (platform tokens must name it)")
    kind = serializers.ChoiceField(choices=TicketBridge.Kind.choices, required=False)
    base_url = serializers.CharField(max_length=500, required=False)
    auth = serializers.ChoiceField(choices=TicketBridge.Auth.choices, required=False)
    username = serializers.CharField(max_length=200, required=False, allow_blank=True)
    secret = serializers.CharField(max_length=2000, required=False, write_only=True,
                                   help_text="API token (write-only: never shown again)")
    project_key = serializers.CharField(max_length=50, required=False, allow_blank=True)
    issue_type = serializers.CharField(max_length=50, required=False)
    priorities = serializers.DictField(child=serializers.CharField(max_length=50), required=False)
    labels = serializers.ListField(child=serializers.CharField(max_length=100), required=False, max_length=20)
    transition_id = serializers.CharField(max_length=20, required=False, allow_blank=True)
    body_template = serializers.CharField(max_length=20_000, required=False, allow_blank=True, trim_whitespace=False)
    key_path = serializers.CharField(max_length=200, required=False, allow_blank=True)
    url_path = serializers.CharField(max_length=200, required=False, allow_blank=True)
    comment_url_template = serializers.CharField(max_length=500, required=False, allow_blank=True)
    auto_create_severities = serializers.ListField(child=serializers.CharField(), required=False)
    close_on_resolve = serializers.BooleanField(required=False)
    enabled = serializers.BooleanField(required=False)


class TicketBridgeCreateSerializer(TicketBridgeInSerializer):
    kind = serializers.ChoiceField(choices=TicketBridge.Kind.choices)
    base_url = serializers.CharField(max_length=500)


class TicketSerializer(serializers.ModelSerializer):
    class Meta:
        model = Ticket
        fields = ["id", "alert", "key", "url", "state", "attempts", "last_error", "created_at", "updated_at"]


class ActionSerializer(serializers.ModelSerializer):
    tenant = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = RemediationAction
        fields = ["id", "tenant", "name", "description", "url", "body_template", "allowed_severities",
                  "requires_confirmation", "enabled", "auto_run_severities", "max_runs_per_hour", "created_at",
                  "updated_at"]


class ActionWithSecretSerializer(ActionSerializer):
    secret = serializers.CharField(help_text="whsec_ signing secret, shown only in this answer")

    class Meta(ActionSerializer.Meta):
        fields = ActionSerializer.Meta.fields + ["secret"]


class ActionInSerializer(serializers.Serializer):
    tenant = serializers.SlugField(required=False, help_text="Tenant slug (platform tokens must name it)")
    name = serializers.SlugField(max_length=100, required=False)
    description = serializers.CharField(max_length=300, required=False, allow_blank=True)
    url = serializers.CharField(max_length=500, required=False)
    body_template = serializers.CharField(max_length=20_000, required=False, trim_whitespace=False)
    allowed_severities = serializers.ListField(child=serializers.CharField(), required=False)
    requires_confirmation = serializers.BooleanField(required=False)
    enabled = serializers.BooleanField(required=False)
    auto_run_severities = serializers.ListField(child=serializers.CharField(), required=False)
    max_runs_per_hour = serializers.IntegerField(min_value=0, max_value=10_000, required=False)


class ActionCreateSerializer(ActionInSerializer):
    name = serializers.SlugField(max_length=100)
    url = serializers.CharField(max_length=500)


class ActionRunInSerializer(serializers.Serializer):
    confirm = serializers.BooleanField(required=False, default=False,
                                       help_text="Required (true) when the action requires confirmation")


class ActionRunSerializer(serializers.ModelSerializer):
    action = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = ActionRun
        fields = ["id", "action", "alert", "trigger", "status", "actor_label", "http_status", "latency_ms",
                  "response_excerpt", "error", "created_at", "finished_at"]
