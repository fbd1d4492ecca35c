"""The alert list's tenant/plugin filters stay small however many plugins exist (issue 12, finding 4)."""
from __future__ import annotations

import pytest

from apps.console.selectors import FILTER_OPTIONS_LIMIT
from apps.tenants.models import Plugin

pytestmark = pytest.mark.django_db


def test_the_list_page_does_not_grow_with_the_number_of_plugins(login, make_alert, tenant):
    make_alert()
    client = login("operator")
    before = len(client.get("/").content)
    Plugin.objects.bulk_create([Plugin(tenant=tenant, slug=f"a-plugin-{i:05d}", name="") for i in range(5000)])
    page = client.get("/")
    html = page.content.decode()
    assert page.status_code == 200
    # Before: one <option> per plugin, ~130 KB more for 5,000 plugins (329 KB at 10,000).
    assert len(page.content) - before < 3_000, len(page.content) - before
    assert html.count('<option value="a-plugin-') == FILTER_OPTIONS_LIMIT
    assert 'name="plugin" list="plugin-options"' in html and 'name="tenant" list="tenant-options"' in html


def test_a_typed_filter_is_kept_in_its_input(login, make_alert, plugin):
    make_alert()
    html = login("operator").get("/?plugin=checkout&tenant=acme").content.decode()
    assert 'name="plugin" list="plugin-options" value="checkout"' in html
    assert 'name="tenant" list="tenant-options" value="acme"' in html


def test_options_lookup_matches_bounded_and_per_viewer(login, tenant, other_tenant):
    Plugin.objects.bulk_create([Plugin(tenant=tenant, slug=f"pay-{i:03d}") for i in range(120)]
                               + [Plugin(tenant=tenant, slug="search"), Plugin(tenant=other_tenant, slug="payroll")])
    staff = login("operator")
    found = staff.get("/alerts/options/plugin?q=PAY").json()["options"]
    assert len(found) == FILTER_OPTIONS_LIMIT and found[0] == "pay-000" and found == sorted(found)
    assert staff.get("/alerts/options/plugin?q=roll").json() == {"options": ["payroll"]}
    assert staff.get("/alerts/options/tenant?q=glo").json() == {"options": ["globex"]}

    member = login("member")  # acme only: another tenant's plugins and the tenant itself stay hidden
    assert member.get("/alerts/options/plugin?q=roll").json() == {"options": []}
    assert member.get("/alerts/options/tenant").json() == {"options": ["acme"]}

    assert staff.get("/alerts/options/rule").status_code == 404
    anonymous = staff.__class__()
    assert anonymous.get("/alerts/options/plugin").status_code == 302  # to the sign-in page
