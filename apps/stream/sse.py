"""The text/event-stream wire format (WHATWG HTML, "Server-sent events")."""
from __future__ import annotations

from typing import Any

import orjson

from .models import StreamEvent


def frame(event_id: int, event_type: str, data: dict[str, Any]) -> bytes:
    """One event: ``id``, ``event`` and a single-line JSON ``data`` (JSON escapes newlines)."""
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event_id, event_type.encode(), orjson.dumps(data))


def event_frame(row: StreamEvent) -> bytes:
    return frame(row.id, row.type, {"id": row.id, "type": row.type, "tenant_id": row.tenant_id,
                                    "alert_id": row.alert_id, "at": row.created_at.isoformat(), **(row.data or {})})


def comment(text: str) -> bytes:
    """A comment line: ignored by clients, keeps proxies and load balancers from closing the connection."""
    return b": %s\n\n" % text.encode()


def retry(milliseconds: int) -> bytes:
    return b"retry: %d\n\n" % milliseconds
