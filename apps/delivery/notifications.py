"""``Notification``: what an alert change hands to delivery, and all delivery ever knows of alerts.

The alerts app builds one per change, inside the change's transaction, and passes it to
``outbox.notify``. It is immutable and complete: the payload is frozen as the JSON bytes tenants
receive (webhook ``data``), so delivery renders every channel from it and never loads an alert.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class Notification:
    event_type: str  # apps.core.vocabulary: alert.triggered | alert.updated | alert.escalated | alert.manual
    alert_id: int
    tenant_id: int
    plugin_id: int | None
    severity: str
    payload_json: bytes  # the alert as tenants see it, exactly as sent
    changes: dict[str, Any] = field(default_factory=dict, compare=False)  # what changed (for the record)

    @classmethod
    def build(cls, *, event_type: str, alert_id: int, tenant_id: int, plugin_id: int | None, severity: str,
              payload: dict[str, Any], changes: dict[str, Any] | None = None) -> Notification:
        return cls(event_type=event_type, alert_id=alert_id, tenant_id=tenant_id, plugin_id=plugin_id,
                   severity=severity, payload_json=orjson.dumps(payload), changes=dict(changes or {}))

    @property
    def payload(self) -> dict[str, Any]:
        """A fresh copy of the payload (callers may change it; the notification stays as it was)."""
        return orjson.loads(self.payload_json)
