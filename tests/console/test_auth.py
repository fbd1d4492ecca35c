"""Sign-in, sign-out, the login throttle, and who-am-I in the header."""
from __future__ import annotations

import pytest
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


def test_five_failures_lock_the_username_from_that_address(make_console_user):
    make_console_user("operator", "olivia")
    c = Client()
    for _ in range(ratelimit.MAX_FAILURES):
        resp = c.post("/login/", {"username": "olivia", "password": "wrong"})
        assert resp.status_code == 200 and "Please enter a correct username" in resp.content.decode()
    # Even the right password is refused now, with a message saying why and for how long.
    resp = c.post("/login/", {"username": "olivia", "password": PASSWORD})
    body = resp.content.decode()
    assert resp.status_code == 200 and "Too many failed sign-ins" in body and "5 minutes" in body
    assert "_auth_user_id" not in c.session
    assert AuditEvent.objects.filter(action="console.login_failed").count() == 5
    assert AuditEvent.objects.get(action="console.login_throttled").data == {"username": "olivia"}
    # Another address (or another username) is not locked out.
    other = Client(REMOTE_ADDR="10.0.0.9")
    assert other.post("/login/", {"username": "olivia", "password": PASSWORD}).status_code == 302


def test_a_success_resets_the_failure_count(make_console_user):
    make_console_user("operator", "olivia")
    c = Client()
    for _ in range(ratelimit.MAX_FAILURES - 1):
        c.post("/login/", {"username": "olivia", "password": "wrong"})
    assert c.post("/login/", {"username": "olivia", "password": PASSWORD}).status_code == 302
    c.post("/logout/")
    assert c.post("/login/", {"username": "olivia", "password": "wrong"}).status_code == 200
    assert c.post("/login/", {"username": "olivia", "password": PASSWORD}).status_code == 302


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
