"""Schemathesis against our own OpenAPI schema (/api/schema/), every operation, two token kinds:
a platform token with every scope and a tenant token with every scope. No answer may be a 5xx,
and every 4xx carries the one error body ``{"error": {"code", "message", "details"}}``.

Bounded: a few examples per operation, no deadline (the first request of an operation pays for
imports), derandomized so a failure reproduces.
"""
from __future__ import annotations

import orjson
import pytest
import schemathesis
from django.core.signals import request_started
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, settings

from alertcenter.wsgi import application
from apps.core.scopes import ALL_SCOPES
from apps.tenants.models import Plugin, Tenant
from apps.tenants.tokens import issue_token

pytestmark = [pytest.mark.django_db]

schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
FUZZ = settings(max_examples=12, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


@pytest.fixture(autouse=True)
def _keep_test_connection():
    # Schemathesis calls the WSGI app directly; Django's request_started handler would close the
    # test's connection (it is inside the test transaction). Django's own test client does the same.
    request_started.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)


@pytest.fixture
def tokens(db):
    tenant = Tenant.objects.create(slug="acme", name="Acme")
    Plugin.objects.create(tenant=tenant, slug="checkout", name="Checkout")
    return {"platform": issue_token(name="platform", scopes=list(ALL_SCOPES), tenant=None)[1],
            "tenant": issue_token(name="tenant", scopes=list(ALL_SCOPES), tenant=tenant)[1]}


def _check(case, token: str) -> None:
    sid = transaction.savepoint()  # each example starts from the same data
    try:
        resp = case.call(headers={"Authorization": f"Bearer {token}"})
    finally:
        transaction.savepoint_rollback(sid)
    where = f"{case.method} {case.formatted_path} -> {resp.status_code}"
    if case.path == "/api/v1/health" and resp.status_code == 503:
        # The documented "down" answer for load balancers (no worker heartbeat in this test).
        assert resp.json()["status"] == "down"
        return
    assert resp.status_code < 500, f"{where}: {resp.text[:500]}\nreproduce: {case.as_curl_command()}"
    if 400 <= resp.status_code < 500:
        try:
            body = orjson.loads(resp.content)
        except orjson.JSONDecodeError:
            raise AssertionError(f"{where}: not JSON: {resp.text[:300]}") from None
        assert isinstance(body, dict) and isinstance(body.get("error"), dict), f"{where}: {body}"
        assert {"code", "message", "details"} <= set(body["error"]), f"{where}: {body}"


@schema.parametrize()
@FUZZ
def test_platform_token(case, tokens):
    _check(case, tokens["platform"])


@schema.parametrize()
@FUZZ
def test_tenant_token(case, tokens):
    _check(case, tokens["tenant"])
