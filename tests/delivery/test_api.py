"""The webhooks API and the manual fallback sends, through the real URLconf and token auth."""
from __future__ import annotations

import socket
from ipaddress import ip_network

import pytest
from django.db import connection
from standardwebhooks.webhooks import Webhook

from apps.delivery.models import Delivery, WebhookEndpoint
from apps.tenants.models import FallbackContact
from tests.delivery.peers import Hook, SmsServer, fire_alert, peer_settings

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def loopback(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = [ip_network("127.0.0.0/8")]


@pytest.fixture
def hook():
    with Hook() as h:
        yield h


@pytest.fixture
def client(api, make_token, tenant):
    return api(make_token(tenant, "webhooks:write"))


def create(client, url, **extra):
    return client.post("/api/v1/webhooks", {"url": url, **extra}, format="json")


def test_create_shows_secret_once_and_stores_it_encrypted(client, hook):
    r = create(client, hook.url, description="ops", min_severity="critical")
    assert r.status_code == 201, r.content
    secret = r.json()["secret"]
    assert secret.startswith("whsec_")
    assert r.json()["event_types"] == ["alert.triggered", "alert.updated", "alert.escalated"]
    pk = r.json()["id"]
    assert "secret" not in client.get(f"/api/v1/webhooks/{pk}").json()
    assert all("secret" not in e for e in client.get("/api/v1/webhooks").json())
    with connection.cursor() as cur:
        cur.execute("SELECT secret_encrypted FROM delivery_webhookendpoint WHERE id = %s", [pk])
        (stored,) = cur.fetchone()
    assert secret not in stored and secret.removeprefix("whsec_") not in stored


def test_ssrf_refused_at_registration_with_reason(client, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = []
    for url, reason in [("http://127.0.0.1:9/x", "http"), ("https://127.0.0.1/x", "loopback"),
                        ("https://169.254.169.254/latest", "link-local"), ("https://10.0.0.5/", "private"),
                        ("ftp://example.com/", "scheme")]:
        r = create(client, url)
        assert r.status_code == 422, (url, r.content)
        assert reason in r.json()["error"]["message"], (url, r.json())
    assert not WebhookEndpoint.objects.exists()


def test_dns_failure_refused_at_registration(client, monkeypatch):
    def nx(*a, **kw):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", nx)
    r = create(client, "https://does-not-exist.invalid/hook")
    assert r.status_code == 422 and "could not resolve" in r.json()["error"]["message"]


def test_other_tenants_endpoints_are_404(api, make_token, client, other_tenant, hook):
    pk = create(client, hook.url).json()["id"]
    other = api(make_token(other_tenant, "webhooks:write"))
    for method, path in [("get", f"/api/v1/webhooks/{pk}"), ("patch", f"/api/v1/webhooks/{pk}"),
                         ("delete", f"/api/v1/webhooks/{pk}"), ("post", f"/api/v1/webhooks/{pk}/rotate-secret"),
                         ("post", f"/api/v1/webhooks/{pk}/test"), ("get", f"/api/v1/webhooks/{pk}/deliveries")]:
        assert getattr(other, method)(path, {}, format="json").status_code == 404, (method, path)
    assert other.get("/api/v1/webhooks").json() == []


def test_scope_required(api, make_token, tenant):
    c = api(make_token(tenant, "alerts:read"))
    assert c.get("/api/v1/webhooks").status_code == 403
    assert api().get("/api/v1/webhooks").status_code == 401


def test_platform_token_names_tenant(api, make_token, tenant, hook):
    c = api(make_token(None, "webhooks:write"))
    assert create(c, hook.url).status_code == 422
    r = create(c, hook.url, tenant="acme")
    assert r.status_code == 201 and r.json()["tenant"] == "acme"


def test_update_delete_and_validation(client, hook):
    pk = create(client, hook.url).json()["id"]
    r = client.patch(f"/api/v1/webhooks/{pk}", {"event_types": ["alert.triggered"], "min_severity": "warning"},
                     format="json")
    assert r.status_code == 200 and r.json()["event_types"] == ["alert.triggered"]
    assert client.patch(f"/api/v1/webhooks/{pk}", {"event_types": ["nope"]}, format="json").status_code == 400
    assert client.delete(f"/api/v1/webhooks/{pk}").status_code == 204
    assert not WebhookEndpoint.objects.exists()


def test_a_bad_list_item_is_named_by_its_index_in_plain_words(client, hook):
    # Was "event_types: {0: [ErrorDetail(string='\"alert.exploded\" is not a valid choice.', ...)]}".
    pk = create(client, hook.url).json()["id"]
    r = client.patch(f"/api/v1/webhooks/{pk}", {"event_types": ["alert.triggered", "alert.exploded"]}, format="json")
    assert r.status_code == 400
    assert r.json()["error"]["message"] == 'event_types[1]: "alert.exploded" is not a valid choice.'
    assert r.json()["error"]["details"] == {"event_types": {"1": ['"alert.exploded" is not a valid choice.']}}


def test_rotate_and_self_test_sign_with_both_secrets(client, hook):
    r = create(client, hook.url)
    pk, old = r.json()["id"], r.json()["secret"]
    rot = client.post(f"/api/v1/webhooks/{pk}/rotate-secret")
    assert rot.status_code == 200
    new = rot.json()["secret"]
    assert new != old and rot.json()["previous_secret_valid_until"]
    t = client.post(f"/api/v1/webhooks/{pk}/test")
    assert t.status_code == 200 and t.json()["ok"] and t.json()["status_code"] == 200
    [req] = hook.requests
    for secret in (old, new):
        Webhook(secret).verify(req["body"], req["headers"])


def test_self_test_reports_failure(client):
    with Hook(lambda n, p, b: (503, {})) as bad:
        pk = create(client, bad.url).json()["id"]
        t = client.post(f"/api/v1/webhooks/{pk}/test").json()
    assert t["ok"] is False and t["status_code"] == 503 and "HTTP 503" in t["error"]


def test_self_test_of_an_endpoint_whose_secret_cannot_be_decrypted_says_so(client, hook):
    """A database restored under other keys: the test answers 200 with the reason, not a 500."""
    pk = create(client, hook.url).json()["id"]
    WebhookEndpoint.objects.filter(pk=pk).update(secret_encrypted="not-a-fernet-token")
    t = client.post(f"/api/v1/webhooks/{pk}/test")
    assert t.status_code == 200
    assert t.json()["ok"] is False and t.json()["error"].startswith("cannot sign: cannot decrypt secret")
    assert hook.requests == []


def test_deliveries_listing(client, tenant, hook):
    pk = create(client, hook.url).json()["id"]
    fire_alert(tenant)
    r = client.get(f"/api/v1/webhooks/{pk}/deliveries")
    assert r.status_code == 200
    [row] = r.json()["results"]
    assert row["event_type"] == "alert.triggered" and row["state"] == "PENDING" and row["attempt_log"] == []


def test_manual_fallback_email_and_sms(api, make_token, tenant, other_tenant, settings, mailoutbox):
    FallbackContact.objects.create(tenant=tenant, kind="email", value="oncall@acme.example")
    FallbackContact.objects.create(tenant=tenant, kind="sms", value="+14155550100")
    alert = fire_alert(tenant)
    c = api(make_token(tenant, "alerts:write"))
    with SmsServer() as sms:
        for k, v in peer_settings(sms=sms).items():
            setattr(settings, k, v)
        r = c.post("/api/v1/alerts/fallback/email", {"alert_id": alert.pk}, format="json")
        assert r.status_code == 200 and r.json()["state"] == "DELIVERED", r.content
        r = c.post("/api/v1/alerts/fallback/sms", {"alert_id": alert.pk}, format="json")
        assert r.status_code == 200 and r.json()["state"] == "DELIVERED", r.content
    assert mailoutbox[0].to == ["oncall@acme.example"] and len(sms.messages) == 1
    assert Delivery.objects.filter(event_type="alert.manual").count() == 2
    other = api(make_token(other_tenant, "alerts:write"))
    assert other.post("/api/v1/alerts/fallback/email", {"alert_id": alert.pk}, format="json").status_code == 404
    assert api(make_token(tenant, "alerts:read")).post(
        "/api/v1/alerts/fallback/email", {"alert_id": alert.pk}, format="json").status_code == 403


def test_manual_fallback_without_contact_is_422(api, make_token, tenant):
    alert = fire_alert(tenant)
    r = api(make_token(tenant, "alerts:write")).post("/api/v1/alerts/fallback/sms", {"alert_id": alert.pk}, format="json")
    assert r.status_code == 422 and "no active sms" in r.json()["error"]["message"]


def test_schema_documents_the_routes(api):
    r = api().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert r.status_code == 200
    paths = r.json()["paths"] if r["Content-Type"].startswith("application/json") else None
    text = r.content.decode()
    for p in ["/api/v1/webhooks", "/api/v1/webhooks/{id}/rotate-secret", "/api/v1/webhooks/{id}/test",
              "/api/v1/webhooks/{id}/deliveries", "/api/v1/alerts/fallback/email", "/api/v1/alerts/fallback/sms"]:
        assert p in (paths or text), p
