"""Plugin registration in the detect transaction: sorted, and cached only once committed."""
from __future__ import annotations

import pytest
from django.db import transaction

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
