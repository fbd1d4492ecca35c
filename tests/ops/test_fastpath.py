"""apps.ops.fastpath on real databases: the scrape's snapshot and the latency histograms.

``both_databases``: tests/test_fastpaths_on_sqlite.py runs these again on a real SQLite file, so
the PostgreSQL path is checked here and its portable twin there, against the same hand counts.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction

from apps.alerts.models import Alert
from apps.core import clock
from apps.ops import fastpath

from .factories import make_alert, make_delivery

pytestmark = pytest.mark.both_databases


@pytest.fixture
def latencies(tenant):
    """Hand-counted latencies: log-to-alert 0.4, 5.0 (on a bound), 100.0 and -3.0 (a skewed clock:
    counted as 0); alert-to-delivery 0.2, 40.0 (first of two deliveries) and 7.0 (fallback email)."""
    a1 = make_alert(tenant, latency=0.4)
    a2 = make_alert(tenant, latency=5.0)
    a3 = make_alert(tenant, latency=100.0)
    make_alert(tenant, latency=-3.0)
    make_alert(tenant)  # no source line: not observed
    make_delivery(a1, delivered_after=0.2)
    make_delivery(a2, delivered_after=40.0)
    make_delivery(a2, delivered_after=55.0)                          # later delivery: not the first
    make_delivery(a3, channel="email", delivered_after=7.0)
    make_delivery(a3, event_type="alert.updated", delivered_after=1.0)  # not a notification of the alert
    make_delivery(a3, state="PENDING", attempts=[False])                 # never delivered


def buckets(h: fastpath.Histogram) -> dict[float, int]:
    return dict(h.buckets)


@pytest.mark.django_db
def test_log_to_alert_latency_is_counted_upper_inclusive_and_clamped_at_zero(latencies):
    h = fastpath.log_to_alert_latency()
    assert h.count == 4 and h.total == pytest.approx(105.4)
    b = buckets(h)
    assert b[0.25] == 1       # the skewed clock, as 0
    assert b[0.5] == 2 and b[2.0] == 2
    assert b[5.0] == 3        # 5.0 exactly: le is inclusive
    assert b[60.0] == 3 and b[120.0] == 4 and b[900.0] == 4


@pytest.mark.django_db
def test_alert_to_delivery_latency_takes_each_alerts_first_triggered_delivery(latencies):
    h = fastpath.alert_to_delivery_latency()
    assert h.count == 3 and h.total == pytest.approx(47.2)
    b = buckets(h)
    assert b[0.25] == 1 and b[5.0] == 1 and b[10.0] == 2 and b[30.0] == 2 and b[60.0] == 3


@pytest.mark.django_db
def test_empty_tables_give_empty_histograms():
    for h in (fastpath.log_to_alert_latency(), fastpath.alert_to_delivery_latency()):
        assert h.count == 0 and h.total == 0.0 and all(n == 0 for _, n in h.buckets)


@pytest.mark.django_db
def test_postgresql_path_and_portable_twin_agree(latencies):
    if not fastpath.on_postgresql():
        pytest.skip("the PostgreSQL path needs PostgreSQL; the twin is checked above on this database")
    for fast, portable in ((fastpath.log_to_alert_latency_pg, fastpath.log_to_alert_latency_portable),
                           (fastpath.alert_to_delivery_latency_pg, fastpath.alert_to_delivery_latency_portable)):
        a, b = fast(), portable()
        assert a.buckets == b.buckets and a.count == b.count and a.total == pytest.approx(b.total)


@pytest.mark.django_db(transaction=True)
def test_scrape_reads_one_snapshot(tenant):
    """A row another connection commits during a scrape is not seen by the rest of the scrape.
    PostgreSQL: the writer commits, the scrape's snapshot does not show it; SQLite (IMMEDIATE
    transactions): the writer waits for the scrape to end."""
    make_alert(tenant)

    def commit_another_alert():
        try:
            make_alert(tenant)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        with transaction.atomic():
            fastpath.begin_scrape_snapshot(outermost=True, timeout_ms=1234)
            assert Alert.objects.count() == 1
            writer = pool.submit(commit_another_alert)
            if fastpath.on_postgresql():
                writer.result(timeout=10)  # committed mid-scrape
                with connection.cursor() as cursor:
                    cursor.execute("SELECT current_setting('transaction_isolation'), "
                                   "current_setting('transaction_read_only'), current_setting('statement_timeout')")
                    assert cursor.fetchone() == ("repeatable read", "on", "1234ms")
            else:
                assert not wait([writer], timeout=0.5).done  # waiting for the scrape's lock
            assert Alert.objects.count() == 1
        writer.result(timeout=30)
    assert Alert.objects.count() == 2


@pytest.mark.django_db
def test_created_at_before_now_is_what_is_measured(tenant):
    """The histograms measure stored timestamps, not the time of the scrape."""
    make_alert(tenant, created_at=clock.now() - timedelta(days=3), latency=2.0)
    h = fastpath.log_to_alert_latency()
    assert h.count == 1 and buckets(h)[2.0] == 1 and buckets(h)[1.0] == 0
