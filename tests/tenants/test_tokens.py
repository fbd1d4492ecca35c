from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.core import clock
from apps.tenants.models import ApiToken
from apps.tenants.tokens import authenticate_token, issue_token, revoke_token

pytestmark = pytest.mark.django_db


def test_token_is_stored_hashed_and_never_retrievable(tenant):
    token, plain = issue_token(name="shipper", scopes="logs:write", tenant=tenant)
    assert plain.startswith(f"ac_{token.prefix}_")
    # The secret part appears in no column of the row.
    secret = plain.split("_", 2)[2]
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM tenants_apitoken WHERE id = %s", [token.pk])
        row = cursor.fetchone()
    assert all(secret not in str(value) for value in row)
    assert len(token.digest) == 64 and token.digest != plain
    assert authenticate_token(plain).pk == token.pk


def test_issue_is_audited(tenant):
    token, _ = issue_token(name="shipper", scopes=["logs:write"], tenant=tenant)
    event = AuditEvent.objects.get(action="token.issued")
    assert (event.target_id, event.tenant_id, event.data["scopes"]) == (str(token.pk), tenant.pk, ["logs:write"])


def test_unknown_scope_is_refused(tenant):
    with pytest.raises(ValueError, match="unknown scope"):
        issue_token(name="x", scopes="logs:write,alerts:delete", tenant=tenant)


def test_revoked_expired_and_inactive_tenant_tokens_fail(api, tenant, make_token):
    token, plain = issue_token(name="t", scopes="alerts:read", tenant=tenant)
    assert api(plain).get(reverse("whoami")).status_code == 200
    revoke_token(token=token)
    assert authenticate_token(plain) is None
    assert api(plain).get(reverse("whoami")).status_code == 401
    assert AuditEvent.objects.filter(action="token.revoked", target_id=str(token.pk)).count() == 1

    token2, plain2 = issue_token(name="t2", scopes="alerts:read", tenant=tenant)
    ApiToken.objects.filter(pk=token2.pk).update(expires_at=clock.now() - timedelta(seconds=1))
    assert authenticate_token(plain2) is None

    _, plain3 = issue_token(name="t3", scopes="alerts:read", tenant=tenant)
    tenant.active = False
    tenant.save()
    assert authenticate_token(plain3) is None


def test_last_used_at_is_recorded(tenant):
    token, plain = issue_token(name="t", scopes="alerts:read", tenant=tenant)
    assert token.last_used_at is None
    authenticate_token(plain)
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_whoami_reports_tenant_and_scopes(api, tenant, make_token):
    resp = api(make_token(tenant, "logs:write,alerts:read", name="shipper")).get(reverse("whoami"))
    assert resp.json() == {"token": "shipper", "tenant": "acme", "scopes": ["alerts:read", "logs:write"]}
    resp = api(make_token(None, "alerts:read", name="ops")).get(reverse("whoami"))
    assert resp.json()["tenant"] is None


@pytest.fixture
def token_clock(monkeypatch):
    """The token cache's monotonic clock, moved by hand."""
    now = [1000.0]
    monkeypatch.setattr("apps.tenants.tokens._monotonic", lambda: now[0])
    return now


def test_a_kept_token_costs_no_query_until_the_cache_time_is_up(tenant, token_clock, settings):
    from django.test.utils import CaptureQueriesContext

    settings.API_TOKEN_CACHE_SECONDS = 5.0
    token, plain = issue_token(name="t", scopes="logs:write", tenant=tenant)
    assert authenticate_token(plain).pk == token.pk  # read, and last_used_at written
    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            assert authenticate_token(plain).pk == token.pk
        token_clock[0] += 5.1
        assert authenticate_token(plain).pk == token.pk
    assert len(queries) == 1
    # A wrong secret with a kept token's prefix is still refused (and read, never kept).
    assert authenticate_token(plain[:-4] + "AAAA") is None


def test_a_revocation_elsewhere_reaches_this_process_within_the_cache_time(tenant, token_clock, settings):
    settings.API_TOKEN_CACHE_SECONDS = 5.0
    token, plain = issue_token(name="t", scopes="logs:write", tenant=tenant)
    assert authenticate_token(plain) is not None
    # .update() sends no signal: what another process's revocation looks like to this one.
    ApiToken.objects.filter(pk=token.pk).update(revoked_at=clock.now())
    token_clock[0] += 5.1
    assert authenticate_token(plain) is None


@pytest.mark.parametrize("change", ["revoke", "token saved", "tenant off", "token deleted"])
def test_a_change_made_in_this_process_is_seen_at_once(tenant, token_clock, settings, change):
    settings.API_TOKEN_CACHE_SECONDS = 60.0
    token, plain = issue_token(name="t", scopes="logs:write", tenant=tenant)
    assert authenticate_token(plain) is not None
    if change == "revoke":
        revoke_token(token=token)
    elif change == "token saved":
        token.expires_at = clock.now() - timedelta(seconds=1)
        token.save()
    elif change == "tenant off":
        tenant.active = False
        tenant.save()
    else:
        token.delete()
    assert authenticate_token(plain) is None


def test_expiry_is_judged_at_every_request_on_a_kept_token(tenant, token_clock, settings, monkeypatch):
    settings.API_TOKEN_CACHE_SECONDS = 60.0
    token, plain = issue_token(name="t", scopes="logs:write", tenant=tenant)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=clock.now() + timedelta(minutes=5))
    assert authenticate_token(plain) is not None
    later = clock.now() + timedelta(minutes=6)
    monkeypatch.setattr("apps.tenants.tokens.clock.now", lambda: later)
    assert authenticate_token(plain) is None


def test_no_cache_time_reads_the_token_at_every_request(tenant, settings):
    from django.test.utils import CaptureQueriesContext

    settings.API_TOKEN_CACHE_SECONDS = 0
    _, plain = issue_token(name="t", scopes="logs:write", tenant=tenant)
    authenticate_token(plain)
    with CaptureQueriesContext(connection) as queries:
        authenticate_token(plain)
        authenticate_token(plain)
    assert len(queries) == 2


def test_a_row_read_while_tokens_are_forgotten_is_not_kept(tenant, token_clock, settings, monkeypatch):
    from django.test.utils import CaptureQueriesContext

    from apps.tenants import tokens

    settings.API_TOKEN_CACHE_SECONDS = 60.0
    _, plain = issue_token(name="t", scopes="logs:write", tenant=tenant)
    forgotten = []

    def keep_after_a_forget(digest, token, generation):  # another thread forgets while this one reads
        if not forgotten:
            forgotten.append(tokens.forget_tokens())
        return keep(digest, token, generation)

    keep = tokens._keep
    monkeypatch.setattr(tokens, "_keep", keep_after_a_forget)
    assert authenticate_token(plain) is not None
    monkeypatch.setattr(tokens, "_keep", keep)
    with CaptureQueriesContext(connection) as queries:
        assert authenticate_token(plain) is not None
    assert len(queries) == 1  # it was not kept: read again
