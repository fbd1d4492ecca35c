"""PluginCount, kept by the triggers of migration tenants 0006, on real PostgreSQL and (through
tests/test_fastpaths_on_sqlite.py) real SQLite: every way a plugin comes or goes is counted, and
intake's plugin limit reads the count instead of counting the plugins."""
from __future__ import annotations

import importlib

import orjson
import pytest
from django.apps import apps as registry
from django.core.management import call_command
from django.db import connection, migrations
from django.test.utils import CaptureQueriesContext

from apps.ingest import tenancy
from apps.tenants.fastpath import insert_plugins
from apps.tenants.models import Plugin, PluginCount, Tenant

pytestmark = [pytest.mark.both_databases, pytest.mark.django_db]


def _counts() -> dict[int, int]:
    return dict(PluginCount.objects.values_list("tenant_id", "n"))


def _real() -> dict[int, int]:
    real: dict[int, int] = {}
    for tenant_id in Plugin.objects.values_list("tenant_id", flat=True):
        real[tenant_id] = real.get(tenant_id, 0) + 1
    return real


def test_every_way_a_plugin_comes_or_goes_is_counted():
    acme = Tenant.objects.create(slug="acme", name="Acme")
    globex = Tenant.objects.create(slug="globex", name="Globex")
    assert _counts() == {}

    one = Plugin.objects.create(tenant=acme, slug="one", name="one")  # the ORM (admin, API)
    Plugin.objects.bulk_create([Plugin(tenant=t, slug=f"b{i}", name="b") for t in (acme, globex) for i in range(3)])
    # The intake/detect path: one statement for many tenants, a pair already there skipped.
    insert_plugins(sorted([(acme.pk, "one"), (acme.pk, "x"), (globex.pk, "x"), (globex.pk, "y")]))
    assert _counts() == {acme.pk: 5, globex.pk: 5} == _real()

    one.delete()
    Plugin.objects.filter(tenant=globex, slug__in=["b0", "b1"]).delete()
    assert _counts() == {acme.pk: 4, globex.pk: 3} == _real()
    Plugin.objects.filter(slug="b2").delete()  # one statement across two tenants
    assert _counts() == {acme.pk: 3, globex.pk: 2} == _real()

    moved = Plugin.objects.get(tenant=acme, slug="x")
    moved.tenant, moved.slug = globex, "from-acme"
    moved.save()
    renamed = Plugin.objects.get(tenant=globex, slug="y")
    renamed.owner = "team-y"
    renamed.save()  # an update that moves nothing changes no count
    Plugin.objects.filter(tenant=acme).update(owner="team-a")
    assert _counts() == {acme.pk: 2, globex.pk: 3} == _real()
    initech = Tenant.objects.create(slug="initech", name="Initech")  # no count row yet
    Plugin.objects.filter(tenant=globex, slug__in=["x", "y"]).update(tenant=initech)
    assert _counts() == {acme.pk: 2, globex.pk: 1, initech.pk: 2} == _real()

    acme.delete()  # the cascade removes its plugins and its count
    assert _counts() == {globex.pk: 1, initech.pk: 2} == _real()


class _Editor:
    """What the migration's RunPython uses of a schema editor, on the test's connection: its
    statements run inside the test's transaction and are rolled back with it."""

    connection = connection

    def execute(self, sql, params=None):
        with connection.cursor() as cursor:
            cursor.execute(sql)


def test_the_migration_counts_the_plugins_already_there_and_its_reverse_stops_counting():
    migration = importlib.import_module("apps.tenants.migrations.0006_plugin_count").Migration
    [op] = [op for op in migration.operations if isinstance(op, migrations.RunPython)]
    acme = Tenant.objects.create(slug="acme", name="Acme")
    globex = Tenant.objects.create(slug="globex", name="Globex")
    op.reverse_code(registry, _Editor())  # the database as before the migration: no triggers
    Plugin.objects.bulk_create([Plugin(tenant=t, slug=f"p{i}", name="p") for t, k in ((acme, 3), (globex, 5))
                                for i in range(k)])
    PluginCount.objects.all().delete()
    assert _counts() == {}  # nothing counts them

    op.code(registry, _Editor())
    assert _counts() == {acme.pk: 3, globex.pk: 5} == _real()
    Plugin.objects.create(tenant=acme, slug="after", name="after")  # and the triggers count from here
    assert _counts() == {acme.pk: 4, globex.pk: 5} == _real()


def test_loaddata_takes_the_count_from_the_plugins_not_from_the_dump(tmp_path):
    acme = Tenant.objects.create(slug="acme", name="Acme")
    Plugin.objects.bulk_create([Plugin(tenant=acme, slug=f"p{i}", name="p") for i in range(4)])
    dump = tmp_path / "counts.json"
    # A dump taken while plugins were being added: its count is off its plugins.
    dump.write_text(orjson.dumps([{"model": "tenants.plugincount", "pk": acme.pk, "fields": {"n": 99}}]).decode())
    call_command("loaddata", str(dump), verbosity=0)
    assert _counts() == {acme.pk: 4} == _real()


def test_the_limit_reads_one_count_per_tenant_and_a_removed_plugin_frees_its_place(settings):
    """The admission does not count a tenant's plugins (what grew with them: bench/plugins.py), it
    reads the triggers' count; and the count follows a removal."""
    settings.TENANT_MAX_PLUGINS = 2000
    small = Tenant.objects.create(slug="small", name="Small")
    big = Tenant.objects.create(slug="big", name="Big")
    Plugin.objects.bulk_create([Plugin(tenant=small, slug=f"p{i}", name="p") for i in range(3)])
    Plugin.objects.bulk_create([Plugin(tenant=big, slug=f"p{i}", name="p") for i in range(1500)])
    tenancy.clear_caches()

    def admit(tenant, slug):
        with CaptureQueriesContext(connection) as queries:
            refused = tenancy.admit_plugins([(tenant.pk, slug)])
        return refused, [q["sql"] for q in queries.captured_queries]

    assert admit(small, "new")[0] == {}
    refused_big, big_sql = admit(big, "new")
    assert refused_big == {}
    assert not any("count(" in sql.lower() for sql in big_sql), big_sql
    assert _counts() == {small.pk: 4, big.pk: 1501} == _real()

    settings.TENANT_MAX_PLUGINS = 1501
    refused, _ = admit(big, "one-too-many")
    assert list(refused) == [(big.pk, "one-too-many")] and refused[(big.pk, "one-too-many")].value == 1501
    Plugin.objects.filter(tenant=big, slug="p0").delete()
    refused, _ = admit(big, "one-too-many")
    assert refused == {} and Plugin.objects.filter(tenant=big, slug="one-too-many").exists()
    assert _counts()[big.pk] == 1501 == _real()[big.pk]
