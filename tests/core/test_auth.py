import pytest

from apps.tenants.models import Plugin
from tests.alerts.conftest import frozen  # noqa: F401  (a controllable clock)

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


# --- failed-token throttle (never aimed at valid tokens) ---------------------------------------

@pytest.fixture
def budgets(settings, clean_redis, frozen):
    """Small budgets, an empty cache and a frozen clock (no window boundary mid-test)."""
    settings.AUTH_FAILURES_PER_MINUTE = 3
    settings.AUTH_FAILURES_PER_ADDRESS_PER_MINUTE = 6
    return settings


def bad_token(n: int) -> str:
    return f"ac_{n:012x}_not-the-secret"


def test_valid_token_still_works_after_other_clients_fail_from_same_address(api, tenant, make_token, budgets):
    good = make_token(tenant, "alerts:read")
    statuses = [api(bad_token(n)).get("/scoped").status_code for n in range(20)]
    assert statuses[-1] == 429  # the address is over its budget for failures...
    assert api(good).get("/scoped").status_code == 200  # ...and a valid token is still served from it


def test_failures_are_throttled_per_token_prefix(api, tenant, make_token, budgets):
    good = make_token(tenant, "alerts:read")
    prefix = good.split("_")[1]
    guesser = api(f"ac_{prefix}_guessed-secret")
    assert [guesser.get("/scoped").status_code for _ in range(3)] == [401, 401, 401]
    resp = guesser.get("/scoped")
    assert resp.status_code == 429
    assert 1 <= int(resp["Retry-After"]) <= 60
    error = resp.json()["error"]
    # Was "...retry after Retry-After Expected available in 36 seconds." (DRF appends its own sentence).
    seconds = "1 second" if resp["Retry-After"] == "1" else f"{resp['Retry-After']} seconds"
    assert error == {"code": "throttled", "details": None,
                     "message": f"too many failed token attempts; check the token and retry after {seconds}"}
    # Another prefix from the same address is judged on its own (the address budget is higher).
    assert api(bad_token(1)).get("/scoped").status_code == 401
    # The token whose prefix is being guessed still works.
    assert api(good).get("/scoped").status_code == 200


def test_the_stream_refuses_a_guesser_in_the_same_words(rf, budgets):
    from apps.core.errors import ApplicationError
    from apps.stream.api.views import authorize

    request = rf.get("/api/v1/stream", HTTP_AUTHORIZATION=f"Bearer {bad_token(7)}")
    codes = []
    for _ in range(4):
        with pytest.raises(ApplicationError) as refused:
            authorize(request)
        codes.append(refused.value.code)
    assert codes == ["authentication_failed"] * 3 + ["throttled"]
    wait = refused.value.headers["Retry-After"]
    assert refused.value.message == ("too many failed token attempts; check the token and retry after "
                                     f"{wait} second{'' if wait == '1' else 's'}")


def test_per_address_budget_is_higher_and_counts_every_prefix(api, budgets):
    statuses = [api(bad_token(n)).get("/scoped").status_code for n in range(7)]
    assert statuses == [401] * 6 + [429]  # each prefix failed once: only the address budget (6) is spent
    assert api("nonsense").get("/scoped").status_code == 429  # garbage counts against the address too
    assert api(bad_token(99)).get("/scoped", REMOTE_ADDR="10.1.2.3").status_code == 401


def test_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(api, budgets):
    budgets.TRUSTED_PROXIES = ["10.0.0.0/8"]
    # An attacker cannot spread its failures over made-up addresses: its own address is counted.
    statuses = [api(bad_token(n)).get("/scoped", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}")
                .status_code for n in range(7)]
    assert statuses == [401] * 6 + [429]


def test_clients_behind_a_trusted_proxy_have_their_own_address_budget(api, tenant, make_token, budgets):
    budgets.TRUSTED_PROXIES = ["10.0.0.0/8"]
    via_proxy = {"REMOTE_ADDR": "10.0.0.5"}
    for n in range(7):
        api(bad_token(n)).get("/scoped", HTTP_X_FORWARDED_FOR="203.0.113.9", **via_proxy)
    assert api(bad_token(50)).get("/scoped", HTTP_X_FORWARDED_FOR="203.0.113.9", **via_proxy).status_code == 429
    # Another client through the same proxy is not affected by the first one's failures.
    assert api(bad_token(51)).get("/scoped", HTTP_X_FORWARDED_FOR="198.51.100.7", **via_proxy).status_code == 401


# --- client address from trusted proxies ------------------------------------------------------------

@pytest.mark.parametrize("remote,forwarded,trusted,expected", [
    ("203.0.113.9", "198.51.100.1", [], "203.0.113.9"),                       # no proxies: header ignored
    ("203.0.113.9", "198.51.100.1", ["10.0.0.0/8"], "203.0.113.9"),           # untrusted peer: spoofed header ignored
    ("10.0.0.5", "198.51.100.1", ["10.0.0.0/8"], "198.51.100.1"),
    ("10.0.0.5", "1.1.1.1, 198.51.100.1, 10.0.0.7", ["10.0.0.0/8"], "198.51.100.1"),  # right-most untrusted hop
    ("10.0.0.5", "10.0.0.6, 10.0.0.7", ["10.0.0.0/8"], "10.0.0.6"),            # all trusted: the left-most
    ("10.0.0.5", "not-an-ip, 198.51.100.1", ["10.0.0.0/8"], "198.51.100.1"),
    ("10.0.0.5", "198.51.100.1, garbage", ["10.0.0.0/8"], "10.0.0.5"),          # stop at the last verifiable hop
    ("10.0.0.5", "198.51.100.1:4711", ["10.0.0.0/8"], "198.51.100.1"),
    ("10.0.0.5", "[2001:db8::1]:443", ["10.0.0.0/8"], "2001:db8::1"),
    ("::ffff:10.0.0.5", "198.51.100.1", ["10.0.0.0/8"], "198.51.100.1"),       # IPv4-mapped peer
    ("10.0.0.5", "", ["10.0.0.0/8"], "10.0.0.5"),
    ("", "198.51.100.1", ["10.0.0.0/8"], ""),
])
def test_client_ip_believes_forwarded_for_only_from_trusted_proxies(settings, remote, forwarded, trusted, expected):
    from django.test import RequestFactory

    from apps.core.client_ip import client_ip

    settings.TRUSTED_PROXIES = trusted
    request = RequestFactory().get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)
    assert client_ip(request) == expected


@pytest.mark.parametrize("name,value,expected", [
    ("TRUSTED_PROXIES", "10.0.0.0/33", "TRUSTED_PROXIES:"),
    ("TRUSTED_PROXIES", "proxy.example", "TRUSTED_PROXIES:"),
    ("AUTH_FAILURES_PER_ADDRESS_PER_MINUTE", "0", "AUTH_FAILURES_PER_ADDRESS_PER_MINUTE: must be a positive integer"),
])
def test_bad_throttle_settings_stop_the_process_naming_the_variable(name, value, expected):
    from tests.core.test_settings import start

    result = start(**{name: value})
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr[-2000:]
