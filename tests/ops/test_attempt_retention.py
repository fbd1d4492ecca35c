"""The attempt log's retention (DELIVERY_ATTEMPT_RETENTION_DAYS, apps.ops.retention): on PostgreSQL
the days past it are dropped whole (migration delivery 0011, apps.core.partitions) and what is left
(the cutoff's own day, the DEFAULT partition) deleted by row, as on SQLite; only attempts the
metrics' fold has counted go, so /metrics' attempt counters read the same before and after."""
from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from django.db import connection

from apps.core import clock, partitions
from apps.delivery.fastpath import ATTEMPT_PARTITIONS
from apps.delivery.models import Delivery, DeliveryAttempt
from apps.ops import folds
from apps.ops.retention import ensure_partitions, purge_expired

from .factories import make_alert, make_delivery
from .support import product, value
from .test_folds import fold_all
from .test_metrics import scrape

# transaction=True: the rows commit as they would in production (a DROP TABLE cannot run in the
# transaction that inserted rows with deferred foreign-key checks still pending).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.both_databases]
DAY = timedelta(days=1)


@pytest.fixture(autouse=True)
def retention(settings):
    settings.DELIVERY_ATTEMPT_RETENTION_DAYS = 90
    settings.METRICS_FOLD_DELAY_SECONDS = 120  # fold_all's delay
    settings.METRICS_FOLD_EVERY_SECONDS = 30


def midnight(day) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc)


def partition_of(attempt: DeliveryAttempt) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM delivery_deliveryattempt WHERE id = %s", [attempt.pk])
        return cursor.fetchone()[0]


def attempt_ids(*deliveries: Delivery) -> list[int]:
    return sorted(DeliveryAttempt.objects.filter(delivery__in=deliveries).values_list("pk", flat=True))


def old_day_partition() -> str | None:
    """A partition for a day 95 days back (PostgreSQL), as beat would have made it then."""
    day = (clock.now() - 95 * DAY).date()
    if not ATTEMPT_PARTITIONS.partitioned():
        return None
    name = f"delivery_deliveryattempt_p{day:%Y%m%d}"
    ATTEMPT_PARTITIONS.ensure(day, days_ahead=0)
    assert name in {d.name for d in ATTEMPT_PARTITIONS.days()}
    return name


def test_past_attempts_go_recent_ones_stay_and_the_counters_do_not_move(tenant):
    now = clock.now()
    day_name = old_day_partition()
    alert = make_alert(tenant)
    in_day = make_delivery(alert, created_at=midnight((now - 95 * DAY).date()) + timedelta(hours=3),
                           attempts=[False, True])
    past_by_row = make_delivery(alert, created_at=now - 91 * DAY, attempts=[False, False, True])
    young = make_delivery(alert, created_at=now - 89 * DAY, attempts=[True])
    today = make_delivery(alert, attempts=[False, True])
    if day_name:
        assert partition_of(in_day.attempt_log.first()) == day_name
        assert partition_of(past_by_row.attempt_log.first()) == "delivery_deliveryattempt_default"
        assert partition_of(today.attempt_log.first()) == f"delivery_deliveryattempt_p{now:%Y%m%d}"
    fold_all()
    before = product(scrape())
    assert value(before, "monitoring_webhook_attempts_total", result="success") == 4
    assert value(before, "monitoring_webhook_attempts_total", result="failure") == 4

    assert purge_expired(dry_run=True).removed["delivery_deliveryattempt"] == 5
    assert purge_expired(chunk_size=2).removed["delivery_deliveryattempt"] == 5
    assert attempt_ids(in_day, past_by_row, young, today) == attempt_ids(young, today)
    if day_name:
        assert day_name not in {d.name for d in ATTEMPT_PARTITIONS.days()}
    assert product(scrape()) == before
    # The deliveries themselves stay, with their outcome.
    assert Delivery.objects.get(pk=past_by_row.pk).attempts == 3
    assert purge_expired().removed["delivery_deliveryattempt"] == 0


def test_attempts_the_fold_has_not_counted_wait_for_it(tenant):
    day_name = old_day_partition()
    alert = make_alert(tenant)
    in_day = make_delivery(alert, created_at=midnight((clock.now() - 95 * DAY).date()) + timedelta(hours=1),
                           attempts=[False, True])
    past_by_row = make_delivery(alert, created_at=clock.now() - 91 * DAY, attempts=[True])
    before = product(scrape())

    # Their ids were allocated just now: the purge's own fold may not pass them for 120 s.
    assert purge_expired().removed["delivery_deliveryattempt"] == 0
    assert len(attempt_ids(in_day, past_by_row)) == 3
    if day_name:
        assert day_name in {d.name for d in ATTEMPT_PARTITIONS.days()}
    assert product(scrape()) == before

    fold_all()
    assert purge_expired().removed["delivery_deliveryattempt"] == 3
    assert attempt_ids(in_day, past_by_row) == []
    assert product(scrape()) == before


def test_the_dry_run_counts_what_the_purge_then_removes_a_day_not_folded_whole_included(tenant):
    day_name = old_day_partition()
    alert = make_alert(tenant)
    at = midnight((clock.now() - 95 * DAY).date()) + timedelta(hours=1)
    make_delivery(alert, created_at=at, attempts=[True])
    make_delivery(alert, created_at=clock.now() - 91 * DAY, attempts=[False, True])
    fold_all()
    # A late attempt of that old day (a worker's clock far behind), not folded yet: the purge keeps
    # that day whole (PostgreSQL) and deletes the rest.
    late = make_delivery(alert, created_at=at, attempts=[False])

    dry = purge_expired(dry_run=True).removed["delivery_deliveryattempt"]
    assert dry == purge_expired().removed["delivery_deliveryattempt"]
    if day_name:
        assert dry == 2  # the two in DEFAULT; the day's folded attempt waits with its day
        assert day_name in {d.name for d in ATTEMPT_PARTITIONS.days()}
    else:
        assert dry == 3  # by row: every folded attempt past retention
    assert len(attempt_ids(late)) == 1


def test_a_day_whose_lock_does_not_come_is_kept_for_the_next_run(tenant, monkeypatch, caplog):
    """A drop waits for every transaction on the table and holds up every new one while it waits:
    it gives up after DROP_LOCK_TIMEOUT and the next run drops the day."""
    day_name = old_day_partition()
    if day_name is None:
        pytest.skip("partitions exist on PostgreSQL only; SQLite keeps one plain table")
    monkeypatch.setattr(partitions, "LOCK_TIMEOUT", "200ms")
    make_delivery(make_alert(tenant), created_at=midnight((clock.now() - 95 * DAY).date()) + timedelta(hours=1),
                  attempts=[False, True])
    fold_all()
    ensure_partitions(clock.now().date())  # the purge's own ensure then has nothing to wait for
    with psycopg.connect(**connection.get_connection_params()) as reader:
        reader.execute("SELECT count(*) FROM delivery_deliveryattempt")  # a long read, still open
        with caplog.at_level(logging.WARNING, logger="apps.core.partitions"):
            assert purge_expired().removed["delivery_deliveryattempt"] == 0
        assert day_name in {d.name for d in ATTEMPT_PARTITIONS.days()}
        assert [r.partition for r in caplog.records if "partition not dropped" in r.getMessage()] == [day_name]
    assert purge_expired().removed["delivery_deliveryattempt"] == 2
    assert day_name not in {d.name for d in ATTEMPT_PARTITIONS.days()}


def test_the_purge_folds_as_far_as_it_may_before_it_deletes(tenant, monkeypatch):
    """Where nothing scrapes /metrics the daily purge is the only fold, each ``folds.advance`` goes
    FOLD_CHUNK ids at most, and a busy day writes more attempts than that: it folds until no fold
    moves, or the attempt log would fall further behind every day."""
    alert = make_alert(tenant)
    old = [make_delivery(alert, created_at=clock.now() - 95 * DAY, attempts=[False, False, True]) for _ in range(2)]
    before = product(scrape())
    folds.advance(now=time.time() - 300)  # a scrape 5 minutes ago: every row is past the fold's delay
    monkeypatch.setattr(folds, "FOLD_CHUNK", 1)
    assert purge_expired().removed["delivery_deliveryattempt"] == 6
    assert attempt_ids(*old) == []
    assert product(scrape()) == before


@pytest.mark.django_db  # in the test's transaction: the days made far ahead go with it
def test_beat_keeps_days_ahead_of_every_partitioned_table():
    if not ATTEMPT_PARTITIONS.partitioned():
        assert ensure_partitions(clock.now().date()) == []
        return
    start = clock.now().date() + 30 * DAY
    created = ensure_partitions(start)
    days = [start + i * DAY for i in range(partitions.DAYS_AHEAD + 1)]
    assert created == ([f"ingest_eventrecord_p{d:%Y%m%d}" for d in days]
                       + [f"delivery_deliveryattempt_p{d:%Y%m%d}" for d in days])
    assert ensure_partitions(start) == []
