"""The checker has teeth: a clean run passes, and each kind of damage is reported."""
from __future__ import annotations

import pytest

from apps.ingest.processing import process_batch
from apps.ingest.services import Writer, accept_events
from apps.rules.models import WindowState

from .harness import RULE_KEY, make_batch, make_world
from .invariants import collect

pytestmark = [pytest.mark.django_db, pytest.mark.reliability]


@pytest.fixture
def world(monkeypatch):
    monkeypatch.setattr("apps.ingest.tasks.detect_batch.delay", lambda batch_id: None)
    w = make_world("inv", None)
    events = make_batch(w, plugins=2, errors_per_plugin=12, noise=5)
    batch_id = accept_events(items=events, writer=Writer(token_id=None, tenant_slug="inv")).batch_id
    w.accepted, w.batches, w.counted = len(events), {batch_id}, {"p0": 12, "p1": 12}
    return w


def test_a_clean_run_passes(world):
    process_batch(batch_id=next(iter(world.batches)))
    report = collect(world.expectation(endpoint_ids=None))
    assert report.violations == [] and report.counted == 24 and report.alerts_fired == 2


def test_an_unprocessed_batch_is_lost(world):
    report = collect(world.expectation(endpoint_ids=None))
    assert report.lost >= 1 and any("not processed" in v for v in report.violations)


def test_a_double_count_is_reported(world):
    process_batch(batch_id=next(iter(world.batches)))
    ws = WindowState.objects.get(rule_key=RULE_KEY, group_key__plugin_id="p0")
    ws.state["buckets"] = {k: v * 2 for k, v in ws.state["buckets"].items()}
    ws.save()
    assert any("window of p0: counted 24, accepted 12" in v for v in collect(world.expectation(endpoint_ids=None)).violations)


def test_a_second_alert_for_a_group_is_reported(world):
    from apps.alerts.models import Alert

    process_batch(batch_id=next(iter(world.batches)))
    a = Alert.objects.get(group_key__plugin_id="p0")
    Alert.objects.filter(pk=a.pk).update(state="RESOLVED")
    a.pk, a.state = None, "OPEN"
    a.save()
    assert any("2 alerts for p0" in v for v in collect(world.expectation(endpoint_ids=None)).violations)
