"""apps.ops.folds: the all-time counters read the same before and after their rows are folded, a
fold never passes an id allocated less than METRICS_FOLD_DELAY_SECONDS ago nor a row whose counts
may still change, and after a fold the scrape counts only the rows past it."""
from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.alerts.models import Alert
from apps.core import clock
from apps.core.models import MetricFold
from apps.delivery.fastpath import ATTEMPT_PARTITIONS
from apps.delivery.models import Delivery
from apps.delivery.selectors import ATTEMPT_CLOCK_MARGIN
from apps.ops import folds

from .factories import make_alert, make_delivery, timeline
from .support import product, value
from .test_metrics import scrape, traffic  # noqa: F401 - the fixture, shared

pytestmark = [pytest.mark.django_db, pytest.mark.both_databases]
DELAY = 120


@pytest.fixture(autouse=True)
def fold_settings(settings):
    settings.METRICS_FOLD_DELAY_SECONDS = DELAY
    settings.METRICS_FOLD_EVERY_SECONDS = 30
    folds._last_run.clear()


def fold_all(chunk: int = folds.FOLD_CHUNK) -> dict[str, int]:
    """Record a candidate now and fold as if the delay had passed."""
    t0 = time.time()
    folds.advance(now=t0, chunk=chunk)
    return folds.advance(now=t0 + DELAY, chunk=chunk)


def test_figures_are_the_same_before_and_after_a_fold_and_grow_exactly_after(traffic):  # noqa: F811
    before = product(scrape())
    folded = fold_all()
    assert folded["alerts"] == Alert.objects.latest("id").pk  # everything folded
    assert product(scrape()) == before
    alert = make_alert(Alert.objects.first().tenant, latency=0.3, severity="warning")
    make_delivery(alert, attempts=[False, True], delivered_after=1.5)
    timeline(alert, "acknowledged")
    after = scrape()
    assert value(after, "monitoring_alerts_created_total", severity="warning") == 2
    assert value(after, "monitoring_webhook_attempts_total", result="success") == 3
    assert value(after, "monitoring_webhook_retry_total") == 3
    assert value(after, "monitoring_alert_confirmed_total") == 3
    assert value(after, "monitoring_log_to_alert_latency_seconds_count") == 4
    assert value(after, "monitoring_log_to_alert_latency_seconds_bucket", le="0.5") == 2
    assert value(after, "monitoring_alert_to_delivery_latency_seconds_sum") == pytest.approx(48.7)
    fold_all()
    assert product(scrape()) == product(after)


def test_a_fold_waits_for_the_delay_and_goes_in_chunks(traffic):  # noqa: F811
    t0 = time.time()
    assert folds.advance(now=t0)["alerts"] == 0  # records the candidate the asserts below count from
    # The scrape folds too (advance_if_due, at its own clock): after the candidate above, so it adds
    # none of its own and its clock cannot make the candidate ready early, however long it takes.
    before = product(scrape())
    assert folds.advance(now=t0 + DELAY - 1)["alerts"] == 0  # ids allocated less than the delay ago
    first = Alert.objects.order_by("id")[0].pk
    assert folds.advance(now=t0 + DELAY, chunk=2)["alerts"] == first + 1  # at most 2 ids past the start
    assert MetricFold.objects.get(name="alerts").folded_at is None  # no candidate passed: no time bound yet
    assert product(scrape()) == before
    assert folds.advance(now=t0 + DELAY + 1, chunk=2)["alerts"] == first + 3
    assert product(scrape()) == before


def test_unfinished_rows_pin_their_fold_until_they_finish(tenant):
    alert = make_alert(tenant)
    pending = make_delivery(alert, state="PENDING", attempts=[False])
    later = make_alert(tenant)
    make_delivery(later, attempts=[True], delivered_after=2.0)
    folded = fold_all()
    assert folded["deliveries"] == pending.pk - 1  # may still be downgraded
    assert folded["first_delivery"] == alert.pk - 1  # its first delivery may still come
    Delivery.objects.filter(pk=pending.pk).update(state="FAILED", downgraded_at=clock.now(),
                                                  delivered_at=alert.created_at + timedelta(seconds=30))
    m = scrape()
    assert value(m, "monitoring_alert_downgrade_total") == 1
    assert value(m, "monitoring_alert_to_delivery_latency_seconds_count") == 2
    folded = fold_all()
    assert folded["deliveries"] == Delivery.objects.latest("id").pk
    assert folded["first_delivery"] == later.pk
    assert product(scrape()) == product(m)


def test_after_a_fold_the_scrape_reads_only_the_rows_past_it(traffic):  # noqa: F811
    fold_all()
    folded_to = dict(MetricFold.objects.values_list("name", "folded_to"))
    with CaptureQueriesContext(connection) as queries:
        scrape()
    # The counts (the fold's own MIN/MAX id lookups are index probes; the success-rate windows read by
    # time alone): once, though two families read the attempts' totals.
    [attempt_query] = unfolded_attempt_queries(queries)
    assert f'"id" > {folded_to["attempts"]}' in attempt_query


def unfolded_attempt_queries(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries
            if 'FROM "delivery_deliveryattempt"' in q["sql"] and "GROUP BY" in q["sql"]]


def test_the_attempts_past_the_fold_are_read_from_its_days_one_stamped_8_hours_behind_included(tenant):
    today = clock.now().date()
    if ATTEMPT_PARTITIONS.partitioned():
        ATTEMPT_PARTITIONS.ensure(today - timedelta(days=40), days_ahead=40 + 7)  # as beat made them
    alert = make_alert(tenant)
    make_delivery(alert, attempts=[True])
    t0 = time.time()
    folds.advance(now=t0)
    folds.advance(now=t0 + DELAY)
    # The newest candidate at or below the fold: no attempt past it was visible then.
    assert MetricFold.objects.get(name="attempts").folded_at == t0 + DELAY
    # Past the fold: a send recorded by a worker whose clock is 8 h behind, and one on time.
    make_delivery(alert, created_at=clock.now() - timedelta(hours=8), attempts=[False])
    make_delivery(alert, attempts=[False, True])
    with CaptureQueriesContext(connection) as queries:
        m = scrape()
    assert value(m, "monitoring_webhook_attempts_total", result="success") == 2
    assert value(m, "monitoring_webhook_attempts_total", result="failure") == 2
    assert value(m, "monitoring_webhook_retry_total") == 1
    if ATTEMPT_PARTITIONS.partitioned():
        [sql] = unfolded_attempt_queries(queries)
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN " + sql)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        days = sorted({datetime.strptime(d, "%Y%m%d").date() for d in re.findall(r"_p(\d{8})", plan)})
        since = datetime.fromtimestamp(t0 + DELAY, tz=timezone.utc) - ATTEMPT_CLOCK_MARGIN
        assert days[0] == since.date(), days  # not the 39 days before it
        assert days == [since.date() + timedelta(days=i) for i in range(len(days))], days


def test_purging_folded_batches_keeps_the_ingest_counters(traffic, tenant):  # noqa: F811
    from apps.core.models import MetricRollup
    from apps.ops.retention import purge_expired

    from .factories import make_batch

    make_batch(tenant, accepted=100, rejected=3, age=timedelta(days=30))
    fold_all()
    before = product(scrape())
    assert purge_expired(chunk_size=1).removed["ingest_ingestbatch"] == 1
    assert product(scrape()) == before  # counted once: by the fold, not again by the purge
    assert value(before, "monitoring_ingest_events_accepted_total", tenant="acme") == 115
    assert not MetricRollup.objects.filter(name__startswith="ingest_events_").exists()


def test_an_attempt_stamped_days_behind_is_read_once_a_fold_sees_it_past_the_fold(tenant):
    """The scrape reads the attempts past the fold from a day before ``folded_at``; a row stamped
    by a clock further behind pulls ``folded_at`` back to it at the next fold (every scrape folds),
    so it is counted, and a row once counted stays counted: the counter never goes down."""
    alert = make_alert(tenant)
    make_delivery(alert, attempts=[True])
    t0 = time.time()
    folds.advance(now=t0)
    folds.advance(now=t0 + DELAY)
    behind = make_delivery(alert, created_at=clock.now() - timedelta(days=3), attempts=[False])
    folds.advance(now=t0 + DELAY + 1)  # as the next scrape would: the new row is not folded yet
    stamped = behind.attempt_log.get().started_at
    assert MetricFold.objects.get(name="attempts").folded_at == stamped.timestamp()
    first = value(scrape(), "monitoring_webhook_attempts_total", result="failure")
    folds.advance(now=t0 + DELAY + 40)
    assert first == value(scrape(), "monitoring_webhook_attempts_total", result="failure") == 1
