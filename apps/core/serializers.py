"""Shared pieces of the API's input serializers."""
from __future__ import annotations

from collections.abc import Mapping

from rest_framework import serializers


MAX_NAMED = 10  # unknown keys named in the error


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
                # The first few, each cut short: a body of 50,000 made-up keys gets a small answer.
                named = {key[:100]: [problem] for key in unknown[:MAX_NAMED]}
                if len(unknown) > MAX_NAMED:
                    named["..."] = [f"{len(unknown) - MAX_NAMED} more unknown field(s)"]
                raise serializers.ValidationError(named)
        return super().to_internal_value(data)
