"""apps.tenants.fastpath on real PostgreSQL and (tests/test_fastpaths_on_sqlite.py) real SQLite:
plugins looked up by exact pair, and registered with every pair's id returned."""
from __future__ import annotations

import orjson
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.tenants.fastpath import insert_plugins, plugin_ids_of_pairs, plugins_of_pairs
from apps.tenants.models import Plugin, Tenant

pytestmark = [pytest.mark.both_databases, pytest.mark.django_db]


def test_exactly_the_registered_pairs_come_back_never_a_crossed_one():
    acme = Tenant.objects.create(slug="acme", name="Acme")
    globex = Tenant.objects.create(slug="globex", name="Globex")
    a_x = Plugin.objects.create(tenant=acme, slug="x", name="X")
    g_y = Plugin.objects.create(tenant=globex, slug="y", name="Y")
    Plugin.objects.create(tenant=acme, slug="other", name="other")
    # (acme, y) and (globex, x) cross a registered tenant with a registered slug: neither exists.
    wanted = [(acme.pk, "x"), (globex.pk, "y"), (acme.pk, "y"), (globex.pk, "x"), (acme.pk, "x"), (9999, "x")]
    found = plugins_of_pairs(wanted)
    assert found == {(acme.pk, "x"): a_x, (globex.pk, "y"): g_y}
    assert found[(acme.pk, "x")].name == "X" and found[(acme.pk, "x")].tenant_id == acme.pk
    assert not found[(acme.pk, "x")]._state.adding  # a row read from the database, savable as such
    assert plugin_ids_of_pairs(wanted) == {(acme.pk, "x"): a_x.pk, (globex.pk, "y"): g_y.pk}
    assert plugins_of_pairs([]) == {} and plugin_ids_of_pairs([]) == {}


def test_postgresql_probes_the_unique_index_even_without_statistics():
    """A storm registers thousands of plugins the planner has no statistics of; the lookup must stay
    one probe of the (tenant, slug) index per pair, never a read of the table or of every plugin of
    the pairs' tenants."""
    if connection.vendor != "postgresql":
        pytest.skip("the plan is PostgreSQL's")
    tenants = [Tenant.objects.create(slug=f"t{i}", name=f"T{i}") for i in range(2)]
    Plugin.objects.bulk_create([Plugin(tenant=t, slug=f"p{i}", name="p") for t in tenants for i in range(1000)])
    wanted = [(t.pk, f"p{i}") for t in tenants for i in range(0, 1000, 20)]
    with CaptureQueriesContext(connection) as queries:
        assert len(plugins_of_pairs(wanted)) == 100
    (sent,) = [q["sql"] for q in queries.captured_queries]  # one statement, its parameters bound
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sent}")
        plan = orjson.dumps(cursor.fetchone()[0]).decode()
    assert "plugin_unique_slug_per_tenant" in plan and "Seq Scan" not in plan and "Bitmap" not in plan
    assert "Rows Removed by Filter" not in plan  # the slug is in the index condition, not filtered after
    assert '"Actual Loops":100' in plan  # one probe per pair


def test_insert_plugins_registers_the_new_pairs_in_order_and_returns_every_id():
    acme = Tenant.objects.create(slug="acme", name="Acme")
    globex = Tenant.objects.create(slug="globex", name="Globex")
    known = Plugin.objects.create(tenant=acme, slug="known", name="Known", owner="team-a")
    pairs = sorted([(acme.pk, "known"), (acme.pk, "b-new"), (globex.pk, "a-new"), (acme.pk, "quote'\\,{}")])
    ids = insert_plugins(pairs)
    assert set(ids) == set(pairs) and ids[(acme.pk, "known")] == known.pk
    new = [ids[p] for p in pairs if p != (acme.pk, "known")]
    assert new == sorted(new)  # inserted in the order given
    rows = {(p.tenant_id, p.slug): p for p in Plugin.objects.all()}
    assert rows[(acme.pk, "known")].name == "Known" and rows[(acme.pk, "known")].owner == "team-a"  # untouched
    for pair in pairs:
        if pair != (acme.pk, "known"):
            plugin = rows[pair]
            assert (plugin.pk, plugin.name, plugin.owner) == (ids[pair], pair[1], "") and plugin.created_at is not None
    assert insert_plugins([]) == {}
    assert insert_plugins(pairs) == ids  # again: nothing new, the same ids
    assert Plugin.objects.count() == 4
