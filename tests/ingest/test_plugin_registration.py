"""Plugin registration in the detect transaction: sorted, and cached only once committed."""
from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from apps.ingest import tenancy
from apps.tenants.models import Plugin


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_registration_is_not_cached(tenant):
    tenancy.clear_caches()

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with transaction.atomic():
            first = tenancy.plugin_ids({(tenant.pk, "fresh"), (tenant.pk, "other")})
            assert set(first) == {(tenant.pk, "fresh"), (tenant.pk, "other")}
            raise Boom
    assert not Plugin.objects.filter(slug__in=["fresh", "other"]).exists()
    with transaction.atomic():
        again = tenancy.plugin_ids({(tenant.pk, "fresh")})
    row = Plugin.objects.get(slug="fresh")
    assert again == {(tenant.pk, "fresh"): row.pk}  # the real row, not the rolled-back id
    assert tenancy.plugin_ids({(tenant.pk, "fresh")}) == {(tenant.pk, "fresh"): row.pk}  # now from the cache
    tenancy.clear_caches()


@pytest.mark.django_db(transaction=True)
def test_later_calls_in_the_transaction_reuse_its_registrations_unless_their_savepoint_rolled_back(tenant):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    tenancy.clear_caches()
    with transaction.atomic():
        first = tenancy.plugin_ids({(tenant.pk, "a"), (tenant.pk, "b")})
        with CaptureQueriesContext(connection) as queries:
            again = tenancy.plugin_ids({(tenant.pk, "a"), (tenant.pk, "b")})
        assert again == first and not queries.captured_queries  # not registered (or read) twice
        with pytest.raises(IntegrityError):
            with transaction.atomic():  # a savepoint that registers "c", then fails
                tenancy.plugin_ids({(tenant.pk, "c")})
                Plugin.objects.create(tenant=tenant, slug="a", name="a")  # the unique constraint
        with CaptureQueriesContext(connection) as queries:
            mixed = tenancy.plugin_ids({(tenant.pk, "a"), (tenant.pk, "c")})
        # "c" went with its savepoint: registered again (looked up, inserted; read back only where
        # the insert does not return the ids: SQLite's bulk_create).
        inserted = ["INSERT"] if connection.vendor == "postgresql" else ["INSERT", "SELECT"]
        assert [q["sql"].split()[0] for q in queries.captured_queries] == ["SELECT", *inserted]
    assert mixed == {(tenant.pk, "a"): first[(tenant.pk, "a")], (tenant.pk, "c"): Plugin.objects.get(slug="c").pk}
    assert tenancy.plugin_ids({(tenant.pk, "c")}) == {(tenant.pk, "c"): mixed[(tenant.pk, "c")]}  # cached
    tenancy.clear_caches()
    # Registered, but not in this process's cache (intake registered it): read, not inserted again.
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        assert tenancy.plugin_ids({(tenant.pk, "c")}) == {(tenant.pk, "c"): mixed[(tenant.pk, "c")]}
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["SELECT"]
    tenancy.clear_caches()


@pytest.mark.django_db(transaction=True)
def test_intake_keeps_the_ids_of_the_plugins_it_registers_once_committed(tenant):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    tenancy.clear_caches()
    with transaction.atomic():
        assert tenancy.admit_plugins([(tenant.pk, "fresh")]) == {}
    row = Plugin.objects.get(tenant=tenant, slug="fresh")
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        assert tenancy.admit_plugins([(tenant.pk, "fresh")]) == {}
        assert tenancy.plugin_ids({(tenant.pk, "fresh")}) == {(tenant.pk, "fresh"): row.pk}
    assert not queries.captured_queries  # known from the registration: neither read nor counted again
    tenancy.clear_caches()
