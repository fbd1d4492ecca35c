"""EventRecord storage through COPY (PostgreSQL): awkward text and JSON survive exactly."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from apps.ingest.models import EventRecord
from apps.core.events import Event
from apps.core.vocabulary import LEVEL_NUMBERS
from apps.ingest.storage import store_events

pytestmark = pytest.mark.django_db
TS = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)


def ev(message, *, trace_id=None, fields=None, plugin="checkout") -> Event:
    return Event(level="ERROR", level_no=LEVEL_NUMBERS["ERROR"], message=message, tenant_id="acme",
                 plugin_id=plugin, ts=TS, trace_id=trace_id, fields=fields or {})


def test_copy_keeps_tabs_newlines_backslashes_unicode_and_json_exactly(tenant, plugin):
    nasty = "tab\there\nnew line \\N \\. back\\slash \u00e9\u4e2d\U0001f600 'q' \"dq\" ,;|"
    fields = {"path": "C:\\temp\\x", "nested": {"list": [1, 2.5, None, True, "\t"], "empty": {}},
              "unicode": "\u00fc\u00df", "big": 2**62}
    n = store_events(batch_id=3, received_at=TS, events=[ev(nasty, trace_id="t\\1", fields=fields), ev("")],
                     matched={0: ["a-rule", "b\trule"]})
    assert n == 2
    row = EventRecord.objects.get(message=nasty)
    assert (row.trace_id, row.fields, row.rule_keys) == ("t\\1", fields, ["a-rule", "b\trule"])
    assert (row.ts, row.received_at, row.batch_id, row.plugin_id) == (TS, TS, 3, plugin.pk)
    empty = EventRecord.objects.get(message="")
    assert (empty.trace_id, empty.fields, empty.rule_keys) == (None, {}, [])


def test_a_large_batch_is_stored_whole_in_order(tenant, plugin):
    assert store_events(batch_id=2, received_at=TS, events=[ev(f"line {i}") for i in range(3000)], matched={}) == 3000
    assert list(EventRecord.objects.filter(batch_id=2).order_by("id").values_list("message", flat=True)) == [
        f"line {i}" for i in range(3000)]
