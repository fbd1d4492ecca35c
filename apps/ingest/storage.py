"""Bulk storage of ``EventRecord`` rows for one batch (the detect worker's write path).

Kept: events of level >= WARNING and every event a rule matched (DESIGN 3.3). Events of a
tenant that no longer exists are dropped (logged), never stored under a wrong tenant.
"""
from __future__ import annotations

import logging
from datetime import datetime

from . import tenancy
from .fastpath import EventRow, insert_event_records
from .normalize import LEVEL_NUMBERS, Event

logger = logging.getLogger(__name__)

MIN_STORED_LEVEL = LEVEL_NUMBERS["WARNING"]


def events_to_store(events: list[Event], matched: dict[int, list[str]]) -> list[int]:
    """Indices of the events that are kept, in order."""
    return [i for i, e in enumerate(events) if e.level_no >= MIN_STORED_LEVEL or i in matched]


def register_plugins(events: list[Event]) -> None:
    """Register the batch's unseen plugins (one sorted insert), before anything else in the
    detect transaction may insert plugins (the engine does for the alerts it fires): with a
    single insert phase in one order, two workers cannot deadlock on the unique index."""
    slugs = {(e.tenant_id, e.plugin_id) for e in events}  # a batch has far fewer pairs than events
    tenants = tenancy.tenant_map({t for t, _ in slugs})
    tenancy.register_plugins({(tenants[t], p) for t, p in slugs if t in tenants})


def store_events(*, batch_id: int, received_at: datetime, events: list[Event],
                 matched: dict[int, list[str]]) -> int:
    """Insert the kept events of a batch (``fastpath.insert_event_records``); returns how many rows were written.

    Runs in the caller's transaction (the one that marks the batch DONE), so a crash stores
    nothing and the retried batch stores everything once.
    """
    keep = events_to_store(events, matched)
    if not keep:
        return 0
    tenants = tenancy.tenant_map({events[i].tenant_id for i in keep})
    pairs = {(tenants[events[i].tenant_id], events[i].plugin_id) for i in keep if events[i].tenant_id in tenants}
    plugins = tenancy.plugin_ids(pairs)
    rows: list[EventRow] = []
    dropped = 0
    for i in keep:
        e = events[i]
        tid = tenants.get(e.tenant_id)
        if tid is None:
            dropped += 1
            continue
        rows.append((tid, plugins.get((tid, e.plugin_id)), e.ts, e.level, e.level_no, e.message, e.trace_id,
                     e.fields, matched.get(i, [])))
    if dropped:
        logger.warning("ingest: events of unknown tenants dropped", extra={"batch_id": batch_id, "dropped": dropped})
    insert_event_records(rows, batch_id=batch_id, received_at=received_at)
    return len(rows)
