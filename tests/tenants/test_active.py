"""The process cache of active tenants (apps.tenants.active): what it sees, and how soon."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.tenants import active
from apps.tenants.models import Tenant

pytestmark = pytest.mark.django_db


@pytest.fixture
def clock(monkeypatch):
    """The cache's monotonic clock, moved by hand."""
    now = [1000.0]
    monkeypatch.setattr(active, "_monotonic", lambda: now[0])
    return now


def test_rows_and_ids_of_active_tenants_only_one_query_per_ttl(clock):
    acme = Tenant.objects.create(slug="acme", name="Acme")
    Tenant.objects.create(slug="off", name="Off", active=False)
    with CaptureQueriesContext(connection) as queries:
        for _ in range(5):
            assert set(active.tenants()) == {"acme"}
            assert active.tenant_ids() == {"acme": acme.pk}
        clock[0] += active.TTL + 0.1
        assert active.tenants()["acme"].name == "Acme"
    assert len(queries) == 2


def test_a_change_made_elsewhere_is_seen_after_the_ttl(clock):
    acme = Tenant.objects.create(slug="acme", name="Acme")
    assert "acme" in active.tenants()
    # .update() sends no signal: what another process's change looks like to this one.
    Tenant.objects.filter(pk=acme.pk).update(active=False)
    clock[0] += active.TTL - 0.1
    assert "acme" in active.tenants()
    clock[0] += 0.2
    assert "acme" not in active.tenants()


def test_a_change_made_in_this_process_is_seen_at_once(clock):
    acme = Tenant.objects.create(slug="acme", name="Acme")
    assert "acme" in active.tenants()
    acme.active = False
    acme.save()
    assert "acme" not in active.tenants()
    globex = Tenant.objects.create(slug="globex", name="Globex")
    assert active.tenant_ids() == {"globex": globex.pk}
    globex.delete()
    assert active.tenants() == {}


def test_an_unknown_slug_reloads_at_most_twice_a_second(clock):
    assert active.tenant_ids() == {}
    acme = Tenant.objects.bulk_create([Tenant(slug="acme", name="Acme")])[0]  # no post_save
    with CaptureQueriesContext(connection) as queries:
        assert active.tenant_id("acme") is None  # asked too soon after the load
        clock[0] += active.MISS_RELOAD_INTERVAL + 0.01
        assert active.tenant_id("acme") == acme.pk
        assert active.tenant_id("nobody") is None
    assert len(queries) == 1


def test_a_tenant_created_elsewhere_is_found_at_once_by_a_lookup_that_wants_it(clock):
    assert active.tenants() == {}
    acme = Tenant.objects.bulk_create([Tenant(slug="acme", name="Acme")])[0]  # no post_save
    clock[0] += active.MISS_RELOAD_INTERVAL + 0.01
    assert active.tenants() == {}  # nobody asked for it: the cache stands until its TTL
    assert active.tenants({"acme"})["acme"].pk == acme.pk
    assert active.tenant_ids({"acme", "nobody"}) == {"acme": acme.pk}  # "nobody": no reload this soon


def test_a_tenant_is_found_by_id_and_a_missing_id_reloads_as_a_missing_slug_does(clock):
    acme = Tenant.objects.create(slug="acme", name="Acme")
    off = Tenant.objects.create(slug="off", name="Off", active=False)
    assert active.tenant(acme.pk).slug == "acme" and active.tenant(off.pk) is None
    globex = Tenant.objects.bulk_create([Tenant(slug="globex", name="Globex")])[0]  # no post_save
    with CaptureQueriesContext(connection) as queries:
        assert active.tenant(globex.pk) is None  # asked too soon after the load
        clock[0] += active.MISS_RELOAD_INTERVAL + 0.01
        assert active.tenant(globex.pk).slug == "globex"
        assert active.tenant(off.pk) is None  # switched off: no reload this soon
    assert len(queries) == 1


def test_a_change_is_read_afresh_again_when_its_transaction_commits(clock, django_capture_on_commit_callbacks):
    acme = Tenant.objects.create(slug="acme", name="Acme")
    assert "acme" in active.tenants()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        acme.active = False
        acme.save()
    assert "acme" not in active.tenants()
    Tenant.objects.filter(pk=acme.pk).update(active=True)  # as another thread might have read it meanwhile
    assert "acme" not in active.tenants()  # read once, kept
    for callback in callbacks:
        callback()
    assert "acme" in active.tenants()
