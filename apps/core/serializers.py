"""Shared pieces of the API's input serializers."""
from __future__ import annotations

from collections.abc import Mapping

from rest_framework import serializers


class RejectUnknownFields:
    """Mix into an input serializer whose body widens an action when a key is missing: DRF ignores
    unknown keys, so ``{"sevrity": "critical"}`` to ack-all would acknowledge every alert. An
    unknown key is a 400 naming it and the accepted ones; nothing is done."""

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            accepted = [name for name, field in self.fields.items() if not field.read_only]
            unknown = sorted(set(data) - set(accepted))
            if unknown:
                problem = f"unknown field; accepted: {', '.join(accepted)}"
                raise serializers.ValidationError({key: [problem] for key in unknown})
        return super().to_internal_value(data)
