import pytest

from apps.tenants.models import Plugin

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.core.urls_scoped")]


def test_missing_token_is_401_with_error_body(api):
    resp = api().get("/scoped")
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "not_authenticated"
    assert resp["WWW-Authenticate"].startswith("Bearer")


def test_bad_token_is_401(api, tenant, make_token):
    good = make_token(tenant, "alerts:read")
    for bad in ["nonsense", good[:-1] + ("x" if good[-1] != "x" else "y"), "ac_ffffffffffff_abc"]:
        resp = api(bad).get("/scoped")
        assert resp.status_code == 401, bad
        assert resp.json()["error"]["message"] == "invalid, expired or revoked token"


def test_malformed_authorization_header_is_401(api, tenant, make_token):
    client = api()
    client.credentials(HTTP_AUTHORIZATION="Token abc")
    assert client.get("/scoped").status_code == 401


def test_scope_is_checked_per_method(api, tenant, make_token):
    client = api(make_token(tenant, "alerts:read"))
    assert client.get("/scoped").status_code == 200
    resp = client.post("/scoped")
    assert resp.status_code == 403
    assert resp.json()["error"] == {"code": "permission_denied", "message": "token lacks scope 'alerts:write'", "details": None}


def test_view_without_declared_scope_is_closed(api, tenant, make_token):
    assert api(make_token(tenant)).get("/undeclared").status_code == 403


def test_tenant_token_gets_404_for_other_tenants_rows(api, tenant, other_tenant, make_token):
    mine = Plugin.objects.create(tenant=tenant, slug="a")
    theirs = Plugin.objects.create(tenant=other_tenant, slug="b")
    client = api(make_token(tenant, "alerts:read"))
    assert client.get(f"/plugins/{mine.pk}").status_code == 200
    resp = client.get(f"/plugins/{theirs.pk}")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"


def test_platform_token_sees_every_tenant(api, tenant, other_tenant, make_token):
    theirs = Plugin.objects.create(tenant=other_tenant, slug="b")
    assert api(make_token(None, "alerts:read")).get(f"/plugins/{theirs.pk}").status_code == 200


def test_database_outage_is_503_with_retry_after_not_500(api, tenant, make_token, monkeypatch):
    from django.db import OperationalError

    from apps.tenants import tokens

    plain = make_token(tenant, "alerts:read")

    def down(_plain):
        raise OperationalError("connection refused")

    monkeypatch.setattr(tokens, "authenticate_token", down)
    resp = api(plain).get("/scoped")
    assert resp.status_code == 503
    assert resp["Retry-After"] == "5"
    assert resp.json()["error"]["code"] == "unavailable"


def test_token_guessing_is_slowed_per_address(api, tenant, make_token, settings, clean_redis):
    settings.AUTH_FAILURES_PER_MINUTE = 3
    good = make_token(tenant, "alerts:read")
    guesser = api("ac_000000000000_guess")
    assert [guesser.get("/scoped").status_code for _ in range(3)] == [401, 401, 401]
    resp = guesser.get("/scoped")
    assert resp.status_code == 429
    assert 1 <= int(resp["Retry-After"]) <= 60
    assert resp.json()["error"]["code"] == "throttled"
    # Once an address is over the limit even a valid token waits: guessing gets no signal.
    assert api(good).get("/scoped").status_code == 429
    # Another address is unaffected.
    other = api(good)
    assert other.get("/scoped", REMOTE_ADDR="10.1.2.3").status_code == 200
