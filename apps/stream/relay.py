"""One client's event stream: replay what it missed from the database, then relay live events
from the hub, with keep-alive comments, until the client leaves or the connection's age limit."""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Collection

from asgiref.sync import sync_to_async

from . import selectors, sse
from .hub import Hub, Subscriber

RETRY_MS = 2000  # how long an EventSource waits before reconnecting by itself


async def _replay(hub: Hub, sub: Subscriber, *, after: int, upto: int, tenant_ids: Collection[int] | None,
                  limit: int) -> bytes:
    """Frames of the events after ``after`` up to ``upto``; past ``limit`` events one ``stream.reset``
    instead (the client refetches its view; its next id is ``upto``)."""
    late = hub.late_ids()
    rows = await sync_to_async(selectors.fresh, thread_sensitive=False)(selectors.replay, after, upto, tenant_ids,
                                                                      limit=limit + 1)
    if len(rows) > limit:
        return sse.frame(upto, "stream.reset", {"reason": f"more than {limit} events missed; reload the view",
                                                "resume_from": upto})
    sub.replayed_late |= {r.id for r in rows if r.id in late}
    return b"".join(sse.event_frame(r) for r in rows)


async def events(hub: Hub, *, tenant_ids: Collection[int] | None, last_event_id: int | None,
                 keepalive_seconds: float, max_age_seconds: float, replay_max: int) -> AsyncIterator[bytes]:
    """The response body of GET /api/v1/stream. Cancelled by the server when the client disconnects."""
    sub = await hub.subscribe(tenant_ids)
    try:
        yield sse.retry(RETRY_MS) + sse.comment("connected")
        last_sent = sub.floor
        if last_event_id is not None:
            upto = sub.floor
            sub.floor = max(sub.floor, last_event_id)  # a client ahead of this hub must not get repeats
            last_sent = sub.floor
            if last_event_id < upto:
                chunk = await _replay(hub, sub, after=last_event_id, upto=upto, tenant_ids=tenant_ids,
                                      limit=replay_max)
                if chunk:
                    yield chunk
        deadline = time.monotonic() + max_age_seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return  # the client reconnects with Last-Event-ID and is authorized afresh
            try:
                await asyncio.wait_for(sub.wake.wait(), min(keepalive_seconds, remaining))
            except TimeoutError:
                if time.monotonic() < deadline:
                    yield sse.comment("keep-alive")
                continue
            if sub.overflowed:
                upto = hub.resync(sub)
                chunk = await _replay(hub, sub, after=last_sent, upto=upto, tenant_ids=tenant_ids, limit=replay_max)
                last_sent = upto
                if chunk:
                    yield chunk
                continue
            items = sub.take()
            if items:
                last_sent = max(last_sent, max(i for i, _ in items))
                yield b"".join(frame for _, frame in items)
    finally:
        hub.unsubscribe(sub)
