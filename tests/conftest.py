from __future__ import annotations

from pathlib import Path

import pytest
import redis as redis_lib
from django.conf import settings
from rest_framework.test import APIClient

from apps.core.scopes import ALL_SCOPES
from apps.tenants.models import Plugin, Tenant
from apps.tenants.tokens import issue_token


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix) -> None:
    """On SQLite, test in a real file beside ``DATABASE_URL``'s (WAL, as the embedded default runs)
    instead of Django's default in-memory database, which has no WAL and no second connection."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3") and db["NAME"] not in ("", ":memory:") and not db.get("TEST", {}).get("NAME"):
        path = Path(db["NAME"])
        db.setdefault("TEST", {})["NAME"] = str(path.with_name(f"test_{path.name}"))


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker) -> None:
    """Django's flush between transactional tests TRUNCATEs every table, which the audit table's
    trigger refuses (apps/audit/migrations/0003) unless ``alertcenter.audit_truncate`` is on: turn
    it on for the throwaway test database only (new sessions, and this one)."""
    from django.db import connection

    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                name = connection.ops.quote_name(connection.settings_dict["NAME"])
                cursor.execute(f"ALTER DATABASE {name} SET alertcenter.audit_truncate = 'on'")
                cursor.execute("SET alertcenter.audit_truncate = 'on'")


@pytest.fixture(autouse=True)
def _fresh_tenant_caches():
    """Tenant and plugin ids change from test to test (rolled-back rows); the per-process caches
    (apps.tenants.active, apps.ingest.tenancy) and the kept tokens (apps.tenants.tokens) must not
    carry them into the next test."""
    from apps.ingest import tenancy
    from apps.tenants import tokens

    tenancy.clear_caches()
    tokens.forget_tokens()
    yield
    tenancy.clear_caches()
    tokens.forget_tokens()


@pytest.fixture(scope="session")
def redis_client():
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    client.ping()
    return client


@pytest.fixture
def clean_redis(redis_client):
    """An empty broker/cache database, so no task from an earlier test is delivered."""
    redis_client.flushdb()
    yield redis_client
    redis_client.flushdb()


@pytest.fixture
def tenant(db) -> Tenant:
    return Tenant.objects.create(slug="acme", name="Acme")


@pytest.fixture
def other_tenant(db) -> Tenant:
    return Tenant.objects.create(slug="globex", name="Globex")


@pytest.fixture
def plugin(tenant) -> Plugin:
    return Plugin.objects.create(tenant=tenant, slug="checkout", name="Checkout")


@pytest.fixture
def make_token(db):
    """make_token(tenant_or_None, "scope,scope") -> plain token string."""

    def make(tenant: Tenant | None, scopes: str | list[str] = ",".join(ALL_SCOPES), name: str = "test") -> str:
        return issue_token(name=name, scopes=scopes, tenant=tenant)[1]

    return make


@pytest.fixture
def api():
    """api(token) -> an APIClient that sends ``Authorization: Bearer <token>``."""

    def client(token: str | None = None) -> APIClient:
        c = APIClient()
        if token:
            c.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        return c

    return client
