from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.core.cache import cache
from django.test import Client

from apps.tenants.models import Plugin, TenantMembership
from tests.alerts.conftest import frozen, make_alert, make_user  # noqa: F401  (shared factories)

PASSWORD = "correct-horse-battery"


@pytest.fixture(autouse=True)
def _empty_cache(db):
    # The login throttle lives in the cache (Redis db of the test run): start every test clean.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def make_console_user(db, tenant):
    """make_console_user(role) -> a user: operator, governance, auditor (staff groups),
    member / member-viewer (TenantMembership of acme), superuser."""

    def make(role: str, username: str | None = None) -> User:
        username = username or role
        user = User.objects.create_user(username=username, password=PASSWORD, is_staff=role in (
            "operator", "governance", "auditor", "superuser"), is_superuser=role == "superuser")
        group = {"operator": "operators", "governance": "governance", "auditor": "auditors"}.get(role)
        if group:
            user.groups.add(Group.objects.get(name=group))
        if role == "member":
            TenantMembership.objects.create(user=user, tenant=tenant, role="operator")
        if role == "member-viewer":
            TenantMembership.objects.create(user=user, tenant=tenant, role="viewer")
        # "nobody-member": signed in, no staff flag, no membership: sees nothing.
        return user

    return make


@pytest.fixture
def login(make_console_user):
    """login(role) -> a Django test Client signed in as a fresh user of that role."""

    def make(role: str = "operator", *, csrf: bool = False) -> Client:
        client = Client(enforce_csrf_checks=csrf)
        client.force_login(make_console_user(role))
        return client

    return make


@pytest.fixture
def other_plugin(other_tenant) -> Plugin:
    return Plugin.objects.create(tenant=other_tenant, slug="billing")
