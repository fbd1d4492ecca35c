"""The validated log event: what ingest produces and the rules engine consumes.

It lives below both apps so that rules never imports ingest (data flows ingest -> rules).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class EventError(ValueError):
    """One event is invalid; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(slots=True)
class Event:
    """A validated event: ``level_no`` orders levels (higher is worse), ``ts`` is aware UTC,
    ``fields`` is JSON-safe and bounded. Masking returns a copy rather than mutating."""

    level: str
    level_no: int
    message: str
    tenant_id: str
    plugin_id: str
    ts: datetime
    trace_id: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
