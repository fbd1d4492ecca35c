"""One fan-out per stream process: a single Redis subscription (or, without Redis, a 0.5 s poll of
the table) feeding every connected client.

On each doorbell (a PUBLISH on ``alertcenter:events``) or tick, the hub reads the rows committed
since its high-water mark (one query for all clients, ``apps.stream.watermark`` keeps them in id
order), renders each SSE frame once and hands it to the subscribers whose tenants match. The Redis
message only says "look"; the table is the truth, so a lost publish delays an event by one tick at
most, never loses it. A client that falls too far behind is told to resync from the database
instead of growing memory without bound.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from django.conf import settings

from . import selectors, sse, watermark

logger = logging.getLogger(__name__)

T = TypeVar("T")
LATE_WATCH_SECONDS = 60.0   # how long a skipped hole may still commit and be sent late
SAFETY_TICK_SECONDS = 2.0   # with Redis up: look anyway, for publishes lost on the way
PUMP_BATCH = 1000


@dataclass(eq=False)
class Subscriber:
    """One client's queue. ``floor``: in-order ids at or below it were replayed (or predate the
    client) and are not queued again; late ids it replayed are in ``replayed_late``."""

    tenant_ids: frozenset[int] | None
    floor: int
    max_pending: int
    replayed_late: set[int] = field(default_factory=set)
    pending: list[tuple[int, bytes]] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    overflowed: bool = False

    def offer(self, tenant_id: int, event_id: int, frame: bytes, *, late: bool) -> None:
        if self.overflowed or (self.tenant_ids is not None and tenant_id not in self.tenant_ids):
            return
        if (event_id in self.replayed_late) if late else event_id <= self.floor:
            return
        if len(self.pending) >= self.max_pending:
            # Too slow a reader: drop the queue, the connection re-reads from the database.
            self.overflowed = True
            self.pending.clear()
        else:
            self.pending.append((event_id, frame))
        self.wake.set()

    def take(self) -> list[tuple[int, bytes]]:
        items, self.pending = self.pending, []
        self.wake.clear()
        return items


class Hub:
    def __init__(self, *, redis_url: str, channel: str, poll_seconds: float, grace_seconds: float,
                 max_pending: int):
        self.redis_url = redis_url
        self.channel = channel
        self.poll_seconds = poll_seconds
        self.grace_seconds = grace_seconds
        self.max_pending = max_pending
        self.hwm = 0
        self.gap_since: float | None = None
        self.late: dict[int, float] = {}
        self.redis_ok = False
        self.subscribers: set[Subscriber] = set()
        # Who may see a tenant's events: its subscribers, and those of every tenant (platform staff).
        # An event is offered to those only, not to every connected client of every tenant.
        self._by_tenant: dict[int, set[Subscriber]] = {}
        self._everyone: set[Subscriber] = set()
        self._doorbell = asyncio.Event()
        self._started = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        # One thread, so the hub's reads reuse one database connection.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stream-hub")

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        call = partial(selectors.fresh, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def start(self) -> None:
        if not self._tasks:
            self._tasks.append(asyncio.create_task(self._run(), name="stream-hub"))
            if self.redis_url:
                self._tasks.append(asyncio.create_task(self._listen(), name="stream-hub-redis"))
        await self._started.wait()

    async def subscribe(self, tenant_ids: Collection[int] | None) -> Subscriber:
        """Register a client; its live events are those above ``sub.floor`` (= the hub's mark now)."""
        await self.start()
        return self.register(Subscriber(tenant_ids=None if tenant_ids is None else frozenset(tenant_ids),
                                        floor=self.hwm, max_pending=self.max_pending))

    def register(self, sub: Subscriber) -> Subscriber:
        self.subscribers.add(sub)
        if sub.tenant_ids is None:
            self._everyone.add(sub)
        for tenant_id in sub.tenant_ids or ():
            self._by_tenant.setdefault(tenant_id, set()).add(sub)
        return sub

    def resync(self, sub: Subscriber) -> int:
        """Start ``sub`` over at the hub's mark (after an overflow); returns that mark: the caller
        replays up to it from the database while new events queue again."""
        sub.pending.clear()
        sub.overflowed = False
        sub.floor = self.hwm
        sub.replayed_late = set()
        return sub.floor

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
        self._everyone.discard(sub)
        for tenant_id in sub.tenant_ids or ():
            mine = self._by_tenant.get(tenant_id)
            if mine is not None:
                mine.discard(sub)
                if not mine:
                    del self._by_tenant[tenant_id]

    def late_ids(self) -> set[int]:
        return set(self.late)

    async def _run(self) -> None:
        while True:
            try:
                self.hwm = await self._db(selectors.head)
                break
            except Exception as exc:  # database not reachable yet: clients wait, we retry
                logger.warning("stream: cannot read the stream head, retrying: %s", exc)
                await asyncio.sleep(1.0)
        self._started.set()
        while True:
            timeout = SAFETY_TICK_SECONDS if self.redis_ok else self.poll_seconds
            if self.gap_since is not None:
                timeout = min(timeout, max(0.01, self.gap_since + self.grace_seconds - time.monotonic()))
            try:
                await asyncio.wait_for(self._doorbell.wait(), timeout)
            except TimeoutError:
                pass
            self._doorbell.clear()
            if not self.subscribers:
                continue
            try:
                await self.pump()
            except Exception:
                logger.exception("stream: reading new events failed; retrying on the next tick")
                await asyncio.sleep(self.poll_seconds)

    async def pump(self) -> int:
        """Read what committed since the mark and hand it out; returns how many events went out."""
        sent = 0
        while True:
            now = time.monotonic()
            self.late = {i: t for i, t in self.late.items() if now - t < LATE_WATCH_SECONDS}
            rows = await self._db(selectors.committed_after, self.hwm, list(self.late), limit=PUMP_BATCH)
            late_rows = [r for r in rows if r.id in self.late]
            fresh = [r for r in rows if r.id > self.hwm]
            step = watermark.advance(self.hwm, [r.id for r in fresh], gap_since=self.gap_since, now=now,
                                     grace=self.grace_seconds)
            for row in late_rows:
                self.late.pop(row.id, None)
            for id_ in step.skipped:
                self.late[id_] = now
            if step.skipped:
                logger.info("stream: gave up waiting for ids %s..%s (rolled back or still open)",
                            step.skipped[0], step.skipped[-1])
            self.hwm, self.gap_since = step.hwm, step.gap_since
            released = set(step.released)
            for row, late in [(r, True) for r in late_rows] + [(r, False) for r in fresh if r.id in released]:
                watching = self._by_tenant.get(row.tenant_id)
                if watching or self._everyone:
                    frame = sse.event_frame(row)  # rendered only if someone may see it
                    for sub in (*self._everyone, *(watching or ())):
                        sub.offer(row.tenant_id, row.id, frame, late=late)
                sent += 1
            if len(rows) < PUMP_BATCH or not released:
                return sent

    async def _listen(self) -> None:
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        while True:
            client = aioredis.Redis.from_url(self.redis_url, health_check_interval=15, socket_connect_timeout=2)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    self.redis_ok = True
                    self._doorbell.set()  # whatever was published while we were away
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._doorbell.set()
            except (RedisError, OSError) as exc:
                if self.redis_ok:
                    logger.warning("stream: Redis subscription lost, polling every %ss: %s", self.poll_seconds, exc)
            finally:
                self.redis_ok = False
                await client.aclose()
            await asyncio.sleep(1.0)


_hubs: dict[int, Hub] = {}


def get_hub() -> Hub:
    """The hub of the running event loop (one per process under uvicorn)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(id(loop))
    if hub is None or getattr(hub, "_loop", None) is not loop:
        hub = Hub(redis_url=settings.REDIS_URL, channel=settings.STREAM_REDIS_CHANNEL,
                  poll_seconds=settings.STREAM_POLL_SECONDS, grace_seconds=settings.STREAM_GAP_GRACE_SECONDS, max_pending=settings.STREAM_MAX_PENDING)
        hub._loop = loop
        _hubs.clear()
        _hubs[id(loop)] = hub
    return hub
