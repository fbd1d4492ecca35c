"""EventRecord day partitions on PostgreSQL (migration ingest 0004, apps.core.partitions): rows land
in their day's partition, days ahead are created idempotently, retention drops whole past days and
deletes the rest by row, and a day whose rows already sit in DEFAULT is left there, still purged."""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import pytest
from django.db import connection

from apps.core import clock, partitions
from apps.ingest.fastpath import EVENT_PARTITIONS
from apps.ingest.models import EventRecord
from apps.ops.retention import purge_expired

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("partitions exist on PostgreSQL only; SQLite keeps one plain table")


def event(tenant, received_at: datetime) -> EventRecord:
    return EventRecord.objects.create(tenant=tenant, ts=received_at, level="ERROR", level_no=40, message="boom",
                                      received_at=received_at)


def partition_of(record: EventRecord) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM ingest_eventrecord WHERE id = %s", [record.pk])
        return cursor.fetchone()[0]


def midnight(day) -> datetime:
    return datetime.combine(day, time(), tzinfo=timezone.utc)


def test_rows_land_in_their_days_partition_and_days_ahead_exist(tenant):
    today = clock.now().date()
    days = {d.first for d in EVENT_PARTITIONS.days()}
    assert {today + timedelta(days=i) for i in range(partitions.DAYS_AHEAD + 1)} <= days
    assert partition_of(event(tenant, clock.now())) == f"ingest_eventrecord_p{today:%Y%m%d}"
    assert partition_of(event(tenant, midnight(today) - timedelta(days=400))) == "ingest_eventrecord_default"


def test_ensure_creates_missing_days_once(tenant):
    start = clock.now().date() + timedelta(days=20)
    created = EVENT_PARTITIONS.ensure(start, days_ahead=2)
    assert created == [f"ingest_eventrecord_p{start + timedelta(days=i):%Y%m%d}" for i in range(3)]
    assert EVENT_PARTITIONS.ensure(start, days_ahead=2) == []


# transaction=True: the rows commit as they would in production (a DROP TABLE cannot run in the
# transaction that inserted rows with deferred foreign-key checks still pending).
@pytest.mark.django_db(transaction=True)
def test_retention_drops_past_days_and_deletes_the_rest_by_row(tenant, settings):
    settings.EVENT_RETENTION_DAYS = 90
    now = clock.now()
    old_day = (now - timedelta(days=95)).date()
    assert EVENT_PARTITIONS.ensure(old_day, days_ahead=0) == [f"ingest_eventrecord_p{old_day:%Y%m%d}"]
    dropped = [event(tenant, midnight(old_day) + timedelta(hours=h)) for h in (1, 5, 23)]
    in_default = event(tenant, now - timedelta(days=91))  # no partition for that day: DEFAULT
    kept = [event(tenant, now - timedelta(days=89)), event(tenant, now)]
    assert partition_of(dropped[0]).endswith(f"p{old_day:%Y%m%d}") and partition_of(in_default).endswith("default")

    report = purge_expired(chunk_size=1)
    assert report.removed["ingest_eventrecord"] == 4
    assert f"ingest_eventrecord_p{old_day:%Y%m%d}" not in {d.name for d in EVENT_PARTITIONS.days()}
    assert sorted(EventRecord.objects.values_list("pk", flat=True)) == sorted(r.pk for r in kept)
    assert purge_expired().removed["ingest_eventrecord"] == 0


@pytest.mark.django_db(transaction=True)
def test_a_day_already_in_default_is_left_there_and_still_purged(tenant, settings):
    settings.EVENT_RETENTION_DAYS = 90
    day = (clock.now() - timedelta(days=100)).date()
    stray = event(tenant, midnight(day) + timedelta(hours=3))  # nobody made that day's partition
    assert partition_of(stray).endswith("default")
    assert EVENT_PARTITIONS.ensure(day, days_ahead=0) == []  # would strand the row: refused
    assert EventRecord.objects.filter(pk=stray.pk).exists()
    assert purge_expired().removed["ingest_eventrecord"] == 1
    assert not EventRecord.objects.filter(pk=stray.pk).exists()
