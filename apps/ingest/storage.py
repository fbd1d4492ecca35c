"""Bulk storage of ``EventRecord`` rows for one batch (the detect worker's write path).

Kept: events of level >= WARNING and every event a rule matched (DESIGN 3.3). Events of a
tenant that no longer exists are dropped (logged), never stored under a wrong tenant.
"""
from __future__ import annotations

import logging
from datetime import datetime

from .models import EventRecord
from .normalize import LEVEL_NUMBERS, Event
from .tenancy import plugin_ids, tenant_map

logger = logging.getLogger(__name__)

MIN_STORED_LEVEL = LEVEL_NUMBERS["WARNING"]


def events_to_store(events: list[Event], matched: dict[int, list[str]]) -> list[int]:
    """Indices of the events that are kept, in order."""
    return [i for i, e in enumerate(events) if e.level_no >= MIN_STORED_LEVEL or i in matched]


def store_events(*, batch_id: int, received_at: datetime, events: list[Event],
                 matched: dict[int, list[str]]) -> int:
    """Insert the kept events of a batch; returns how many rows were written.

    Runs in the caller's transaction (the one that marks the batch DONE), so a crash stores
    nothing and the retried batch stores everything once.
    """
    keep = events_to_store(events, matched)
    if not keep:
        return 0
    tenants = tenant_map()
    pairs = {(tenants[events[i].tenant_id], events[i].plugin_id) for i in keep if events[i].tenant_id in tenants}
    plugins = plugin_ids(pairs)
    rows = []
    dropped = 0
    for i in keep:
        e = events[i]
        tid = tenants.get(e.tenant_id)
        if tid is None:
            dropped += 1
            continue
        rows.append(EventRecord(
            tenant_id=tid, plugin_id=plugins.get((tid, e.plugin_id)), ts=e.ts, level=e.level,
            level_no=e.level_no, message=e.message, trace_id=e.trace_id, fields=e.fields,
            rule_keys=matched.get(i, []), batch_id=batch_id, received_at=received_at,
        ))
    if dropped:
        logger.warning("ingest: events of unknown tenants dropped", extra={"batch_id": batch_id, "dropped": dropped})
    EventRecord.objects.bulk_create(rows, batch_size=2000)
    return len(rows)
