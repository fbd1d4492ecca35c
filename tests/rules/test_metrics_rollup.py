"""Rollup math of metrics intake through ``apps.rules.fastpath`` on PostgreSQL and (re-run by
tests/test_fastpaths_on_sqlite.py) on a real SQLite file: count/sum/min/max/sumsq/last merge."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from apps.rules import fastpath
from apps.rules.metrics import Sample, rollup, series_hash, store_samples
from apps.rules.models import MetricRollup, MetricSeries

MINUTE = 1_780_000_020  # a minute boundary
AT = datetime.fromtimestamp(MINUTE + 59, timezone.utc)


def sample(value: float, ts: float, **labels) -> Sample:
    return Sample(0, "load", tuple(sorted(labels.items())), value, ts)


def test_rollup_aggregates_per_series_and_minute_in_memory():
    rows = rollup([sample(2, MINUTE + 10), sample(4, MINUTE + 5), sample(1, MINUTE + 70), sample(9, MINUTE, i="b")])
    h = series_hash("load", ())
    assert rows[(h, MINUTE)] == [2, 6.0, 2.0, 4.0, 20.0, 2.0, MINUTE + 10]  # last = newest ts, not arrival
    assert rows[(h, MINUTE + 60)] == [1, 1.0, 1.0, 1.0, 1.0, 1.0, MINUTE + 70]
    assert rows[(series_hash("load", (("i", "b"),)), MINUTE)][0] == 1


@pytest.mark.both_databases
@pytest.mark.django_db
def test_upserts_merge_into_existing_rollups(tenant):
    store_samples(tenant_id=tenant.pk, samples=[sample(3, MINUTE + 30), sample(5, MINUTE + 40)], now=AT)
    # A later request: one sample older than the stored last (late arrival), one newer minute.
    store_samples(tenant_id=tenant.pk, samples=[sample(-1, MINUTE + 20), sample(7, MINUTE + 61)], now=AT)
    series = MetricSeries.objects.get(tenant=tenant)
    first, second = MetricRollup.objects.filter(series=series).order_by("minute")
    assert (first.count, first.sum, first.min, first.max, first.sumsq, first.last) == (3, 7.0, -1.0, 5.0, 35.0, 5.0)
    assert first.last_ts == datetime.fromtimestamp(MINUTE + 40, timezone.utc)
    assert first.minute == datetime.fromtimestamp(MINUTE, timezone.utc)
    assert (second.count, second.last) == (1, 7.0)


@pytest.mark.both_databases
@pytest.mark.django_db
def test_insert_series_is_idempotent_and_returns_ids(tenant):
    rows = [("h1", "a", {"x": "1"}), ("h2", "b", {})]
    first = fastpath.insert_series(tenant.pk, rows, AT)
    again = fastpath.insert_series(tenant.pk, rows + [("h3", "c", {})], AT)
    assert set(first) == {"h1", "h2"} and {k: again[k] for k in first} == first and "h3" in again
    assert MetricSeries.objects.filter(tenant=tenant).count() == 3
