"""The intake's per-process caches (apps.rules.metrics): series ids per tenant (filled on commit,
bounded, forgotten when a series disappears under them) and the memoised label checks."""
from __future__ import annotations

import time

import orjson
import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.rules.metrics import (
    SERIES_IDS,
    Sample,
    SeriesIdCache,
    series_hash,
    store_samples,
)
from apps.rules.models import MetricRollup, MetricSeries

URL = "/api/v1/metrics"


@pytest.fixture(autouse=True)
def empty_cache():
    SERIES_IDS.clear()
    yield
    SERIES_IDS.clear()


def post(client, body):
    return client.post(URL, data=orjson.dumps(body), content_type="application/json")


def load(instance: str, value: float = 1.0) -> dict:
    return {"name": "node_load1", "labels": {"instance": instance}, "value": value, "ts": time.time()}


def series_queries(queries) -> list[str]:
    return [q["sql"] for q in queries if MetricSeries._meta.db_table in q["sql"]]


@pytest.mark.django_db(transaction=True)
def test_known_series_skip_the_series_lookup_once_committed(api, make_token, tenant):
    writer = api(make_token(tenant, "metrics:write"))
    assert post(writer, [load("web-1"), load("web-2")]).json()["series_created"] == 2
    with CaptureQueriesContext(connection) as ctx:
        resp = post(writer, [load("web-1", 5), load("web-2", 6)])
    assert resp.json() == {"accepted": 2, "rejected": [], "series_created": 0}
    assert series_queries(ctx.captured_queries) == []
    assert sorted(MetricRollup.objects.values_list("count", flat=True)) == [2, 2]
    # A new series beside known ones: only the new one is looked up and created.
    with CaptureQueriesContext(connection) as ctx:
        resp = post(writer, [load("web-1"), load("web-3")])
    assert resp.json()["series_created"] == 1
    assert series_queries(ctx.captured_queries)


@pytest.mark.django_db(transaction=True)
def test_a_series_deleted_under_the_cache_is_created_again(api, make_token, tenant):
    writer = api(make_token(tenant, "metrics:write"))
    post(writer, [load("web-1")])
    assert len(SERIES_IDS) == 1
    MetricSeries.objects.filter(tenant=tenant).delete()  # the cached id now points at nothing
    resp = post(writer, [load("web-1", 7)])
    assert resp.status_code == 202, resp.content
    assert resp.json() == {"accepted": 1, "rejected": [], "series_created": 1}
    series = MetricSeries.objects.get(tenant=tenant)
    assert MetricRollup.objects.get().series_id == series.pk
    assert SERIES_IDS.get_many(tenant.pk, [series.labels_hash]) == {series.labels_hash: series.pk}


@pytest.mark.django_db(transaction=True)
def test_cached_ids_never_cross_tenants(api, make_token, tenant, other_tenant):
    acme = api(make_token(tenant, "metrics:write"))
    globex = api(make_token(other_tenant, "metrics:write"))
    post(acme, [load("web-1", 1)])
    resp = post(globex, [load("web-1", 9)])  # same name and labels, other tenant
    assert resp.json()["series_created"] == 1
    post(acme, [load("web-1", 2)])
    post(globex, [load("web-1", 8)])
    sums = {r.series.tenant_id: (r.count, r.sum) for r in MetricRollup.objects.select_related("series")}
    assert sums == {tenant.pk: (2, 3.0), other_tenant.pk: (2, 17.0)}


@pytest.mark.django_db
def test_ids_of_a_rolled_back_transaction_are_not_cached(tenant):
    sample = Sample(0, "up", (), 1.0, time.time())

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        store_samples(tenant_id=tenant.pk, samples=[sample], now=timezone.now())
        raise Abort
    assert len(SERIES_IDS) == 0
    assert not MetricSeries.objects.exists()


def test_the_cache_drops_the_least_recently_used_beyond_its_size():
    cache = SeriesIdCache(size=2)
    cache.put_many(1, {"a": 10, "b": 11})
    assert cache.get_many(1, ["a"]) == {"a": 10}  # "a" is now the most recent
    cache.put_many(1, {"c": 12})
    assert cache.get_many(1, ["a", "b", "c"]) == {"a": 10, "c": 12}  # "b" dropped; "c" now the most recent
    cache.put_many(2, {"a": 20})  # another tenant's "a": its own entry, tenant 1's "a" dropped
    assert cache.get_many(2, ["a"]) == {"a": 20} and cache.get_many(1, ["a", "c"]) == {"c": 12}
    cache.forget_tenant(1)
    assert cache.get_many(1, ["c"]) == {} and len(cache) == 1


@pytest.mark.django_db
def test_memoised_checks_still_refuse_every_bad_sample(api, make_token, tenant):
    writer = api(make_token(tenant, "metrics:write"))
    good = {"name": "m", "labels": {"a": "x"}, "value": 1}
    body = [good, {"name": "m", "labels": {"a": 1}, "value": 1}, good, {"name": "m", "labels": {"a": 1}, "value": 1},
            {"name": "m", "labels": {"a": ["x"]}, "value": 1}, {"name": ["m"], "labels": [], "value": 1},
            {"name": "m", "labels": {"__a": "x"}, "value": 1}]
    for _ in range(2):  # the second time every check comes from the memo or is redone
        out = post(writer, body).json()
        assert out["accepted"] == 2
        assert {r["index"]: r["error"] for r in out["rejected"]} == {
            1: "labels.a: must be a string, got int", 3: "labels.a: must be a string, got int",
            4: "labels.a: must be a string, got list",
            5: "name: invalid metric name ['m'] (Prometheus names: [a-zA-Z_:][a-zA-Z0-9_:]*, at most 200 characters)",
            6: "labels: invalid label name '__a'"}
    assert series_hash("m", (("a", "x"),)) == MetricSeries.objects.get(tenant=tenant).labels_hash
