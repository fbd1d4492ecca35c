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
