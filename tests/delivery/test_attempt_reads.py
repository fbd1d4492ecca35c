"""Reads of the attempt log by delivery (the alert page, the diagnostic report, an endpoint's
deliveries API): each lists every attempt of its deliveries, one stamped by a clock hours behind
included, and on PostgreSQL reads only the attempt log's days since the deliveries were made, not
every day partition kept (``apps.delivery.selectors.with_attempt_logs``)."""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from ipaddress import ip_network

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.core import clock
from apps.delivery import selectors
from apps.delivery.fastpath import ATTEMPT_PARTITIONS
from apps.delivery.models import DeliveryAttempt
from tests.ops.factories import make_alert, make_delivery

pytestmark = [pytest.mark.django_db, pytest.mark.both_databases]


@pytest.fixture
def endpoint_id(api, make_token, tenant, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = [ip_network("127.0.0.0/8")]
    client = api(make_token(tenant, "webhooks:write"))
    r = client.post("/api/v1/webhooks", {"url": "http://127.0.0.1:9/hook"}, format="json")
    assert r.status_code == 201, r.content
    return r.json()["id"], client


def test_every_attempt_is_listed_even_one_stamped_by_a_clock_8_hours_behind(tenant, endpoint_id):
    pk, client = endpoint_id
    other_pk = client.post("/api/v1/webhooks", {"url": "http://127.0.0.1:9/other"}, format="json").json()["id"]
    now = clock.now()
    stepped, earlier = make_alert(tenant), make_alert(tenant)
    newer = make_delivery(stepped, created_at=now, attempts=[True], endpoint_id=pk)
    # A worker whose clock stepped 8 h back recorded a second send of it.
    DeliveryAttempt.objects.create(delivery=newer, number=2, channel="webhook", started_at=now - timedelta(hours=8),
                                   success=True, status_code=200)
    older = make_delivery(earlier, created_at=now - timedelta(days=3), attempts=[False, True], endpoint_id=other_pk)
    also_older = make_delivery(earlier, created_at=now - timedelta(days=1), attempts=[False, False, True],
                               endpoint_id=other_pk)

    def by_alert(alert):
        return {d.pk: [a.number for a in d.attempt_log.all()] for d in selectors.deliveries_for_alert(alert.pk)}

    def by_endpoint(endpoint):
        r = client.get(f"/api/v1/webhooks/{endpoint}/deliveries")
        assert r.status_code == 200, r.content
        return {row["id"]: [(a["number"], a["success"]) for a in row["attempt_log"]] for row in r.json()["results"]}

    assert by_alert(stepped) == {newer.pk: [1, 2]}
    assert by_alert(earlier) == {older.pk: [1, 2], also_older.pk: [1, 2, 3]}
    assert by_endpoint(pk) == {newer.pk: [(1, True), (2, True)]}
    assert by_endpoint(other_pk) == {older.pk: [(1, False), (2, True)],
                                     also_older.pk: [(1, False), (2, False), (3, True)]}


def scanned_partitions(sql: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    return set(re.findall(r"delivery_deliveryattempt_(p\d{8}|default)", plan))


def test_the_attempts_query_reads_only_the_days_since_the_deliveries_were_made(tenant, endpoint_id):
    if not ATTEMPT_PARTITIONS.partitioned():
        pytest.skip("the attempt log is partitioned on PostgreSQL only")
    pk, client = endpoint_id
    today = clock.now().date()
    ATTEMPT_PARTITIONS.ensure(today - timedelta(days=40), days_ahead=40 + 7)  # as beat made them day after day
    alert = make_alert(tenant)
    created = clock.now() - timedelta(days=2)
    make_delivery(alert, created_at=created, attempts=[True], endpoint_id=pk)
    first_day = (created - selectors.ATTEMPT_CLOCK_MARGIN).date()  # a day before the delivery

    for read in (lambda: selectors.deliveries_for_alert(alert.pk),
                 lambda: client.get(f"/api/v1/webhooks/{pk}/deliveries")):
        with CaptureQueriesContext(connection) as queries:
            read()
        [sql] = [q["sql"] for q in queries.captured_queries if 'FROM "delivery_deliveryattempt"' in q["sql"]]
        scanned = scanned_partitions(sql)
        days = sorted(datetime.strptime(name, "p%Y%m%d").date() for name in scanned - {"default"})
        assert days[0] == first_day, days  # not the 37 days before it
        assert days == [first_day + timedelta(days=i) for i in range(len(days))] and len(days) >= 11, days
