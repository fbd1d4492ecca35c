"""apps.console.fastpath on real PostgreSQL and (via tests/test_fastpaths_on_sqlite.py) real SQLite."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from apps.console.fastpath import events_of_rule
from apps.ingest.models import EventRecord

pytestmark = [pytest.mark.both_databases, pytest.mark.django_db]
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def store(tenant, plugin, rule_keys_per_event: list[list[str]]) -> None:
    EventRecord.objects.bulk_create([EventRecord(
        tenant=tenant, plugin=plugin, ts=T0 + timedelta(seconds=i), level="ERROR", level_no=40, message=f"e{i}",
        rule_keys=keys, received_at=T0) for i, keys in enumerate(rule_keys_per_event)])


def test_only_the_rules_events_in_the_querysets_order_capped_at_limit(tenant, plugin):
    # e0..e9: every third event is the rule's (alone or with another rule); a prefix match is not.
    store(tenant, plugin, [["errors"] if i % 3 == 0 else ["errors-2"] if i % 3 == 1 else ["auth", "errors"]
                           if i == 2 else [] for i in range(10)])
    newest_first = EventRecord.objects.order_by("-ts", "-id")
    assert [e.message for e in events_of_rule(newest_first, rule_key="errors", limit=10)] == ["e9", "e6", "e3", "e2", "e0"]
    assert [e.message for e in events_of_rule(newest_first, rule_key="errors", limit=2)] == ["e9", "e6"]
    assert [e.message for e in events_of_rule(newest_first.filter(ts__lte=T0 + timedelta(seconds=3)),
                                              rule_key="auth", limit=10)] == ["e2"]
    assert events_of_rule(newest_first, rule_key="missing", limit=10) == []
