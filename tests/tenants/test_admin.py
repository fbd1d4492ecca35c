"""Admin changes to memberships, token expiry and fallback contacts write audit rows, as the API's do."""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from apps.audit.models import AuditEvent
from apps.tenants.models import ApiToken, FallbackContact, TenantMembership
from apps.tenants.tokens import issue_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def root(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "a-long-password")
    client.force_login(user)
    return client


def audit(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def test_membership_add_change_delete_are_audited(root, tenant):
    bob = get_user_model().objects.create_user("bob", password="x" * 12)
    resp = root.post("/admin/tenants/tenantmembership/add/", {"user": bob.pk, "tenant": tenant.pk, "role": "viewer"})
    assert resp.status_code == 302
    membership = TenantMembership.objects.get(user=bob)
    [created] = audit("membership.created")
    assert (created.actor_label, created.tenant_id, created.target_id) == ("root", tenant.pk, str(membership.pk))
    assert created.data["user"] == "bob" and created.data["role"] == "viewer"

    resp = root.post(f"/admin/tenants/tenantmembership/{membership.pk}/change/",
                     {"user": bob.pk, "tenant": tenant.pk, "role": "admin"})
    assert resp.status_code == 302
    [updated] = audit("membership.updated")
    assert updated.data == {"user": "bob", "role": "admin", "changes": {"role": {"from": "viewer", "to": "admin"}}}

    resp = root.post(f"/admin/tenants/tenantmembership/{membership.pk}/delete/", {"post": "yes"})
    assert resp.status_code == 302 and not TenantMembership.objects.exists()
    [deleted] = audit("membership.deleted")
    assert deleted.data == {"user": "bob", "role": "admin"} and deleted.tenant_id == tenant.pk


def test_token_expiry_change_is_audited(root, tenant):
    token, _ = issue_token(name="ci", scopes="logs:write", tenant=tenant)
    resp = root.post(f"/admin/tenants/apitoken/{token.pk}/change/",
                     {"expires_at_0": "2031-01-02", "expires_at_1": "03:04:05"})
    assert resp.status_code == 302, resp.context and resp.context["adminform"].form.errors
    assert ApiToken.objects.get(pk=token.pk).expires_at.year == 2031
    [event] = audit("token.updated")
    assert event.actor_label == "root" and event.tenant_id == tenant.pk and event.target_id == str(token.pk)
    assert event.data["changes"]["expires_at"]["from"] is None
    assert event.data["changes"]["expires_at"]["to"].startswith("2031-01-02 03:04:05")


def test_fallback_contact_admin_and_tenant_inline_are_audited(root, tenant):
    resp = root.post("/admin/tenants/fallbackcontact/add/",
                     {"tenant": tenant.pk, "kind": "email", "value": "ops@example.com", "active": "on"})
    assert resp.status_code == 302
    contact = FallbackContact.objects.get()
    [created] = audit("fallback_contact.created")
    assert created.data["value"] == "ops@example.com" and created.tenant_id == tenant.pk

    inline = {"slug": tenant.slug, "name": tenant.name, "active": "on",
              "plugins-TOTAL_FORMS": "0", "plugins-INITIAL_FORMS": "0",
              "fallback_contacts-TOTAL_FORMS": "1", "fallback_contacts-INITIAL_FORMS": "1",
              "fallback_contacts-0-id": contact.pk, "fallback_contacts-0-tenant": tenant.pk,
              "fallback_contacts-0-kind": "email", "fallback_contacts-0-value": "attacker@example.net",
              "fallback_contacts-0-active": "on"}
    resp = root.post(f"/admin/tenants/tenant/{tenant.pk}/change/", inline)
    assert resp.status_code == 302, resp.context and [f.errors for f in resp.context["inline_admin_formsets"]]
    [updated] = audit("fallback_contact.updated")
    assert updated.data == {"kind": "email", "value": "attacker@example.net", "active": True, "changed": ["value"]}

    resp = root.post(f"/admin/tenants/tenant/{tenant.pk}/change/", {**inline, "fallback_contacts-0-DELETE": "on"})
    assert resp.status_code == 302 and not FallbackContact.objects.exists()
    assert [e.data["value"] for e in audit("fallback_contact.deleted")] == ["attacker@example.net"]
