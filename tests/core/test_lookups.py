"""``__any`` (apps.core.lookups): integer membership as one array parameter on PostgreSQL, ``IN``
elsewhere (``both_databases``: run again on a real SQLite file)."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.tenants.models import Plugin

pytestmark = [pytest.mark.django_db, pytest.mark.both_databases]


@pytest.fixture
def plugins(tenant):
    return [Plugin.objects.create(tenant=tenant, slug=f"p{i}") for i in range(5)]


def test_any_selects_exactly_the_listed_ids(plugins):
    wanted = [plugins[3].pk, plugins[0].pk, plugins[3].pk, 10**12]  # duplicates and unknown ids
    assert set(Plugin.objects.filter(pk__any=wanted).values_list("pk", flat=True)) == {plugins[0].pk, plugins[3].pk}
    assert set(Plugin.objects.filter(tenant_id__any=[plugins[0].tenant_id]).values_list("pk", flat=True)) == \
        {p.pk for p in plugins}


def test_any_takes_instances_for_their_key_and_skips_none(plugins):
    got = Plugin.objects.filter(pk__any=[plugins[2], None]).values_list("pk", flat=True)
    assert list(got) == [plugins[2].pk]
    assert list(Plugin.objects.filter(pk__any=[None])) == []


def test_any_of_nothing_matches_nothing_and_updates_nothing(plugins):
    assert list(Plugin.objects.filter(pk__any=[])) == []
    assert Plugin.objects.filter(pk__any=[]).update(name="x") == 0


def test_any_takes_integers_only(plugins):
    assert list(Plugin.objects.filter(pk__any=[str(plugins[1].pk)]).values_list("pk", flat=True)) == [plugins[1].pk]
    with pytest.raises(ValueError):
        list(Plugin.objects.filter(pk__any=["1); DROP TABLE tenants_plugin; --"]))


def test_any_sends_one_array_parameter_on_postgresql(plugins):
    ids = [p.pk for p in plugins]
    with CaptureQueriesContext(connection) as queries:
        assert Plugin.objects.filter(pk__any=ids).update(name="seen") == len(ids)
    sql = queries.captured_queries[-1]["sql"]
    if connection.vendor == "postgresql":
        assert "= ANY(" in sql and sql.count(str(ids[-1])) == 1
    else:
        assert " IN (" in sql
    assert set(Plugin.objects.values_list("name", flat=True)) == {"seen"}
