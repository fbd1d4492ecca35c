"""Sign-in, sign-out, the login throttle, and who-am-I in the header."""
from __future__ import annotations

import pytest
from django.contrib.auth.signals import user_login_failed
from django.test import Client

from apps.audit.models import AuditEvent
from apps.console import ratelimit

from .conftest import PASSWORD

pytestmark = pytest.mark.django_db


def test_pages_need_a_signed_in_user():
    c = Client()
    for url in ("/", "/alerts/1", "/dashboard", "/audit", "/audit/export.csv", "/silences", "/alerts/rows"):
        resp = c.get(url)
        assert resp.status_code == 302 and resp["Location"].startswith("/login/?next="), url


def test_sign_in_is_audited_and_the_header_says_who_and_where(make_console_user):
    make_console_user("operator", "olivia")
    c = Client(enforce_csrf_checks=True)
    page = c.get("/login/")
    token = page.cookies["csrftoken"].value
    resp = c.post("/login/", {"username": "olivia", "password": PASSWORD, "csrfmiddlewaretoken": token})
    assert resp.status_code == 302 and resp["Location"] == "/"
    assert c.session.get_expiry_age() == 12 * 3600
    event = AuditEvent.objects.get(action="console.login")
    assert event.actor_label == "olivia" and event.ip == "127.0.0.1"
    header = c.get("/").content.decode()
    assert "olivia" in header and "operator" in header and "all tenants" in header


def test_tenant_member_header_shows_their_tenant_and_read_only(login):
    body = login("member-viewer").get("/").content.decode()
    assert "tenant viewer" in body and ">acme<" in body and "read-only" in body


def test_login_without_csrf_token_is_refused(make_console_user):
    make_console_user("operator", "olivia")
    resp = Client(enforce_csrf_checks=True).post("/login/", {"username": "olivia", "password": PASSWORD})
    assert resp.status_code == 403


@pytest.fixture
def fast_hashing(settings):
    # Dozens of sign-ins per test: a cheap hasher keeps them fast; the code path is the same.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def behind_proxy(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]

    def client(address: str) -> Client:
        """A browser at ``address`` reaching us through our TLS proxy at 10.0.0.1."""
        return Client(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=address)

    return client


def sign_in(client: Client, username: str, password: str):
    return client.post("/login/", {"username": username, "password": password})


def test_right_password_works_after_five_wrong_ones_from_another_address(
        make_console_user, fast_hashing, behind_proxy, frozen):
    make_console_user("operator", "olivia")
    attacker = behind_proxy("203.0.113.9")
    for _ in range(8):
        sign_in(attacker, "olivia", "wrong")
        frozen.advance(seconds=ratelimit.MAX_DELAY_SECONDS)
    resp = sign_in(behind_proxy("198.51.100.7"), "olivia", PASSWORD)
    assert resp.status_code == 302 and resp["Location"] == "/"
    event = AuditEvent.objects.get(action="console.login")
    assert event.actor_label == "olivia" and event.ip == "198.51.100.7"
    assert set(AuditEvent.objects.filter(action="console.login_failed").values_list("ip", flat=True)) == {
        "203.0.113.9"}


def test_growing_delay_from_the_same_address(make_console_user, fast_hashing, frozen):
    make_console_user("operator", "olivia")
    c = Client()
    for _ in range(ratelimit.FREE_FAILURES - 1):
        resp = sign_in(c, "olivia", "wrong")
        assert resp.status_code == 200 and "Please enter a correct username" in resp.content.decode()
    resp = sign_in(c, "olivia", "wrong")  # the 5th failure: wait 2 s
    assert resp.status_code == 429 and resp["Retry-After"] == "2"
    assert "Try again in 2 s" in resp.content.decode()
    failed = []
    user_login_failed.connect(lambda **kw: failed.append(kw), weak=False, dispatch_uid="t")
    try:
        resp = sign_in(c, "olivia", PASSWORD)  # even the right password waits, and is not checked
    finally:
        user_login_failed.disconnect(dispatch_uid="t")
    assert resp.status_code == 429 and "Try again in 2 s" in resp.content.decode() and failed == []
    assert "_auth_user_id" not in c.session
    frozen.advance(seconds=2)
    resp = sign_in(c, "olivia", "wrong")  # the 6th failure: the wait doubles
    assert resp.status_code == 429 and resp["Retry-After"] == "4"
    frozen.advance(seconds=3)
    assert sign_in(c, "olivia", PASSWORD)["Retry-After"] == "1"
    frozen.advance(seconds=1)
    assert sign_in(c, "olivia", PASSWORD).status_code == 302  # after the wait it works
    assert list(AuditEvent.objects.filter(action="console.login_failed").order_by("id")
                .values_list("data__failures", "data__wait_seconds")) == [
        (1, 0), (2, 0), (3, 0), (4, 0), (5, 2), (6, 4)]


def test_the_delay_is_capped_and_unknown_usernames_wait_alike(make_console_user, fast_hashing, frozen):
    assert [ratelimit.delay_after(n) for n in (1, 4, 5, 6, 7, 12, 13, 50)] == [0, 0, 2, 4, 8, 256, 300, 300]
    make_console_user("operator", "olivia")
    for username in ("olivia", "ghost"):  # the answer does not tell whether the user exists
        c = Client()
        statuses = [sign_in(c, username, "wrong").status_code for _ in range(ratelimit.FREE_FAILURES + 1)]
        assert statuses == [200] * (ratelimit.FREE_FAILURES - 1) + [429, 429], username


def test_unknown_username_failures_write_a_bounded_number_of_audit_rows(make_console_user, fast_hashing, frozen):
    make_console_user("operator", "olivia")
    c = Client()
    for n in range(200):
        assert sign_in(c, f"random-{n}", "wrong").status_code == 200
    rows = AuditEvent.objects.filter(action="console.login_failed_unknown_user").order_by("id")
    assert [r.data["failures_in_window"] for r in rows] == [1, 10, 100]
    assert rows.last().data["last_username"] == "random-99" and rows.last().ip == "127.0.0.1"
    assert AuditEvent.objects.count() == 3
    # Failures for a real user are still one row each.
    sign_in(c, "olivia", "wrong")
    assert AuditEvent.objects.get(action="console.login_failed").data["username"] == "olivia"


def test_a_success_resets_the_failure_count(make_console_user, fast_hashing):
    make_console_user("operator", "olivia")
    c = Client()
    for _ in range(ratelimit.FREE_FAILURES - 1):
        sign_in(c, "olivia", "wrong")
    assert sign_in(c, "olivia", PASSWORD).status_code == 302
    c.post("/logout/")
    assert sign_in(c, "olivia", "wrong").status_code == 200  # counting starts again from one
    assert sign_in(c, "olivia", PASSWORD).status_code == 302


def test_user_without_tenant_or_staff_role_is_told_what_is_missing(login):
    resp = login("nobody-member").get("/dashboard")
    body = resp.content.decode()
    assert resp.status_code == 403
    assert "no tenant membership and no staff role" in body
    assert "create_operator nobody-member --password-stdin --tenant" in body


def test_sign_out_is_post_only_and_audited(login):
    c = login("operator")
    assert c.get("/logout/").status_code == 405
    resp = c.post("/logout/")
    assert resp.status_code == 302 and resp["Location"] == "/login/"
    assert AuditEvent.objects.filter(action="console.logout").count() == 1
    assert c.get("/").status_code == 302


def test_metrics_api_and_admin_still_answer(client):
    assert client.get("/metrics").status_code == 200
    assert client.get("/api/v1/whoami").status_code == 401
    assert client.get("/admin/").status_code == 302
