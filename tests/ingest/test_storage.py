"""EventRecord storage (no rules engine involved): what is kept, plugins, masking, tenants."""
from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pytest

from apps.ingest.codec import decode_events, encode_events
from apps.ingest.models import EventRecord
from apps.core.events import Event
from apps.core.vocabulary import LEVEL_NUMBERS
from apps.ingest.storage import store_events
from apps.tenants.models import Plugin

pytestmark = pytest.mark.django_db
TS = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)


def ev(level="INFO", message="m", tenant="acme", plugin="checkout", **kw) -> Event:
    return Event(level=level, level_no=LEVEL_NUMBERS[level], message=message, tenant_id=tenant,
                 plugin_id=plugin, ts=kw.pop("ts", TS), **kw)


def test_codec_round_trips_events_exactly():
    events = [ev("ERROR", "boom", trace_id="t-1", fields={"host": "a", "n": [1, {"x": None}]}),
              ev("DEBUG", "quiet", ts=datetime(2024, 5, 1, tzinfo=timezone.utc))]
    assert decode_events(encode_events(events)) == events
    assert decode_events(memoryview(encode_events(events))) == events
    assert decode_events(encode_events([])) == []


def test_codec_writes_an_array_per_event_and_still_reads_the_older_objects():
    events = [ev("ERROR", "boom", trace_id="t-1", fields={"host": "a"}), ev("DEBUG", "quiet")]
    assert orjson.loads(encode_events(events)) == [
        ["ERROR", "boom", "acme", "checkout", 1714564800123456, "t-1", {"host": "a"}],
        ["DEBUG", "quiet", "acme", "checkout", 1714564800123456, None, None]]
    # A batch stored by the version before (pending across an upgrade) decodes to the same events.
    older = orjson.dumps([{"l": "ERROR", "m": "boom", "t": "acme", "p": "checkout", "s": 1714564800123456, "r": "t-1",
                           "f": {"host": "a"}},
                          {"l": "DEBUG", "m": "quiet", "t": "acme", "p": "checkout", "s": 1714564800123456}])
    assert decode_events(older) == events


def test_keeps_warning_and_above_and_every_matched_event(tenant, plugin):
    events = [ev("INFO", "plain"), ev("WARNING", "warned"), ev("DEBUG", "matched debug"), ev("FATAL", "dead")]
    n = store_events(batch_id=7, received_at=TS, events=events, matched={2: ["panic"], 3: ["fatal-error"]})
    assert n == 3
    rows = {r.message: r for r in EventRecord.objects.all()}
    assert set(rows) == {"warned", "matched debug", "dead"}
    assert rows["matched debug"].rule_keys == ["panic"]
    assert rows["warned"].rule_keys == []
    dead = rows["dead"]
    assert (dead.tenant_id, dead.plugin_id, dead.batch_id, dead.level, dead.level_no) == (
        tenant.pk, plugin.pk, 7, "FATAL", LEVEL_NUMBERS["FATAL"])
    assert dead.ts == TS and dead.received_at == TS


def test_unseen_plugins_are_registered_once(tenant):
    events = [ev("ERROR", plugin="New.Plugin"), ev("ERROR", plugin="New.Plugin"), ev("ERROR", plugin="other")]
    store_events(batch_id=1, received_at=TS, events=events, matched={})
    store_events(batch_id=2, received_at=TS, events=events, matched={})
    plugins = Plugin.objects.filter(tenant=tenant).order_by("slug")
    assert [p.slug for p in plugins] == ["New.Plugin", "other"]
    assert EventRecord.objects.filter(plugin__slug="New.Plugin").count() == 4


def test_events_of_unknown_tenants_are_dropped_not_misfiled(tenant):
    n = store_events(batch_id=1, received_at=TS, events=[ev("ERROR", tenant="gone"), ev("ERROR")], matched={})
    assert n == 1 and EventRecord.objects.get().tenant_id == tenant.pk
