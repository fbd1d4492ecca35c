"""The hub offers each event to the clients that may see it: its tenant's and the all-tenant ones
(platform staff), not to every connected client; an event nobody may see is not even rendered."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from types import SimpleNamespace

from apps.stream import hub as hub_module
from apps.stream.hub import Hub, Subscriber


def test_an_event_is_offered_to_its_tenants_clients_and_the_all_tenant_ones_only(monkeypatch):
    hub = Hub(redis_url="", channel="test", poll_seconds=1.0, grace_seconds=0.0, max_pending=100)
    acme = hub.register(Subscriber(tenant_ids=frozenset({1}), floor=0, max_pending=100))
    acme_and_globex = hub.register(Subscriber(tenant_ids=frozenset({1, 2}), floor=0, max_pending=100))
    staff = hub.register(Subscriber(tenant_ids=None, floor=0, max_pending=100))
    others = [hub.register(Subscriber(tenant_ids=frozenset({100 + i}), floor=0, max_pending=100)) for i in range(50)]
    gone = hub.register(Subscriber(tenant_ids=frozenset({2}), floor=0, max_pending=100))
    hub.unsubscribe(gone)

    at = datetime(2026, 12, 1, tzinfo=timezone.utc)
    rows = [SimpleNamespace(id=i, tenant_id=t, type="alert.created", alert_id=i, created_at=at, data={})
            for i, t in ((1, 1), (2, 2), (3, 999))]
    batches = [rows, []]

    async def db(fn, *args, **kwargs):
        return batches.pop(0)

    offered, rendered = [], []
    real_offer, real_frame = Subscriber.offer, hub_module.sse.event_frame
    monkeypatch.setattr(hub, "_db", db)
    monkeypatch.setattr(Subscriber, "offer", lambda self, *a, **k: (offered.append(self), real_offer(self, *a, **k)))
    monkeypatch.setattr(hub_module.sse, "event_frame", lambda row: (rendered.append(row.id), real_frame(row))[1])

    assert asyncio.run(hub.pump()) == 3
    assert [i for i, _ in acme.take()] == [1]
    assert [i for i, _ in acme_and_globex.take()] == [1, 2]
    assert [i for i, _ in staff.take()] == [1, 2, 3]
    assert all(not o.pending for o in others) and not gone.pending
    assert len(offered) == 3 + 2 + 1  # event 1: acme, acme+globex, staff; 2: acme+globex, staff; 3: staff
    assert rendered == [1, 2, 3] and hub.hwm == 3

    hub.unsubscribe(staff)
    batches[:] = [[SimpleNamespace(id=4, tenant_id=999, type="alert.created", alert_id=4, created_at=at, data={})], []]
    assert asyncio.run(hub.pump()) == 1
    assert rendered == [1, 2, 3]  # nobody may see tenant 999's event: not rendered
