"""The channels API through the real URLconf and token auth: CRUD, secrets, SSRF, isolation, scopes,
audit, and the test action against local vendor servers (tests/delivery/vendors.py)."""
from __future__ import annotations

from ipaddress import ip_network

import pytest
from django.db import connection

from apps.audit.models import AuditEvent
from apps.delivery.models import NotificationChannel
from apps.delivery.secrets import channel_secrets
from tests.alerts.conftest import make_alert  # noqa: F401  (shared factory fixture)
from tests.delivery.vendors import PagerDutyServer, SlackServer

pytestmark = pytest.mark.django_db

ROUTING_KEY = "R0UT1NGKEYR0UT1NGKEYR0UT1NGKEY12"


@pytest.fixture(autouse=True)
def loopback(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = [ip_network("127.0.0.0/8")]


@pytest.fixture
def client(api, make_token, tenant):
    return api(make_token(tenant, "channels:write,channels:read"))


@pytest.fixture
def slack():
    with SlackServer() as server:
        yield server


def create_slack(client, url, name="ops-slack", **extra):
    return client.post("/api/v1/channels", {"kind": "slack", "name": name, "config": {"webhook_url": url}, **extra},
                       format="json")


def stored_secret_column(pk: int) -> str:
    with connection.cursor() as cur:
        cur.execute("SELECT secrets_encrypted, config::text FROM delivery_notificationchannel WHERE id = %s", [pk])
        secret, config = cur.fetchone()
    return secret + config


def test_create_never_returns_secrets_and_stores_them_encrypted(client, slack):
    r = create_slack(client, slack.url)
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["kind"] == "slack" and body["secret_keys"] == ["webhook_url"] and body["config"] == {}
    assert slack.TOKEN_PATH not in r.content.decode()
    assert body["preview"]["text"]  # the default templates rendered for a sample alert
    pk = body["id"]
    assert slack.TOKEN_PATH not in client.get(f"/api/v1/channels/{pk}").content.decode()
    assert slack.TOKEN_PATH not in client.get("/api/v1/channels").content.decode()
    assert slack.TOKEN_PATH not in stored_secret_column(pk)
    assert channel_secrets(NotificationChannel.objects.get(pk=pk)) == {"webhook_url": slack.url}


def test_pagerduty_public_and_secret_keys_split(client):
    r = client.post("/api/v1/channels", {"kind": "pagerduty", "name": "pd", "config": {
        "routing_key": ROUTING_KEY, "base_url": "http://127.0.0.1:9"}}, format="json")
    assert r.status_code == 201, r.content
    assert r.json()["config"] == {"base_url": "http://127.0.0.1:9"} and r.json()["secret_keys"] == ["routing_key"]
    assert ROUTING_KEY not in r.content.decode() and ROUTING_KEY not in stored_secret_column(r.json()["id"])


def test_update_merges_config_keeping_omitted_secret_and_audits(client, tenant):
    pk = client.post("/api/v1/channels", {"kind": "pagerduty", "name": "pd", "config": {
        "routing_key": ROUTING_KEY, "base_url": "http://127.0.0.1:9"}}, format="json").json()["id"]
    r = client.patch(f"/api/v1/channels/{pk}", {"config": {"base_url": "http://127.0.0.1:10"},
                                                "rate_limit_per_minute": 30, "enabled": False}, format="json")
    assert r.status_code == 200, r.content
    channel = NotificationChannel.objects.get(pk=pk)
    assert channel.config == {"base_url": "http://127.0.0.1:10"} and not channel.enabled
    assert channel.rate_limit_per_minute == 30
    assert channel_secrets(channel) == {"routing_key": ROUTING_KEY}
    actions = list(AuditEvent.objects.filter(tenant_id=tenant.pk, target_type="delivery.notificationchannel",
                                             target_id=str(pk)).order_by("id").values_list("action", flat=True))
    assert actions == ["channel.created", "channel.updated"]
    assert all(ROUTING_KEY not in str(e.data) for e in AuditEvent.objects.filter(target_id=str(pk)))


def test_delete_is_audited(client, slack, tenant):
    pk = create_slack(client, slack.url).json()["id"]
    assert client.delete(f"/api/v1/channels/{pk}").status_code == 204
    assert not NotificationChannel.objects.filter(pk=pk).exists()
    assert AuditEvent.objects.filter(action="channel.deleted", target_id=str(pk), tenant_id=tenant.pk).exists()


def test_a_channel_a_policy_routes_to_cannot_be_deleted(client, slack, tenant):
    # Was 204, leaving the policy with "channels": [] so its alerts reached nobody.
    pk = create_slack(client, slack.url).json()["id"]
    spare = create_slack(client, slack.url, name="spare").json()["id"]
    night = client.post("/api/v1/policies", {"name": "night", "channels": [pk]}, format="json").json()["id"]
    crit = client.post("/api/v1/policies", {"name": "critical", "channels": [spare], "fallback_channels": [pk]},
                       format="json").json()["id"]
    resp = client.delete(f"/api/v1/channels/{pk}")
    assert resp.status_code == 409, resp.content
    assert resp.json()["error"] == {
        "code": "channel_in_use",
        "message": "channel 'ops-slack' is used by policies 'critical', 'night'; take it out of them first",
        "details": {"policies": [{"id": crit, "name": "critical", "as": ["fallback_channels"]},
                                 {"id": night, "name": "night", "as": ["channels"]}]}}
    assert NotificationChannel.objects.filter(pk=pk).exists()
    assert client.get(f"/api/v1/policies/{night}").json()["channels"] == [pk]
    assert not AuditEvent.objects.filter(action="channel.deleted").exists()
    # Out of both policies, it goes.
    client.patch(f"/api/v1/policies/{night}", {"channels": [spare]}, format="json")
    assert client.delete(f"/api/v1/channels/{pk}").status_code == 409  # still critical's fallback
    client.patch(f"/api/v1/policies/{crit}", {"fallback_channels": []}, format="json")
    assert client.delete(f"/api/v1/channels/{pk}").status_code == 204


def test_ssrf_refused_at_save_naming_the_field(client, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = []
    for url, reason in [("https://127.0.0.1/services/x", "loopback"), ("https://169.254.169.254/x", "link-local"),
                        ("https://10.0.0.5/hook", "private"), ("http://hooks.example.com/x", "http")]:
        r = create_slack(client, url)
        assert r.status_code == 422, (url, r.content)
        error = r.json()["error"]
        assert error["code"] == "unsafe_url" and "config.webhook_url" in error["message"], error
        assert reason in error["message"], (url, error)
    r = client.post("/api/v1/channels", {"kind": "opsgenie", "name": "og", "config": {
        "api_key": "0123abcd-0123-0123-0123-0123456789ab", "base_url": "https://192.168.1.1"}}, format="json")
    assert r.status_code == 422 and "config.base_url" in r.json()["error"]["message"]
    assert not NotificationChannel.objects.exists()


def test_ssrf_refused_on_update_and_nothing_changes(client, slack, settings):
    pk = create_slack(client, slack.url).json()["id"]
    settings.WEBHOOK_ALLOWED_NETWORKS = []
    r = client.patch(f"/api/v1/channels/{pk}", {"config": {"webhook_url": "https://10.1.2.3/x"}}, format="json")
    assert r.status_code == 422 and "private" in r.json()["error"]["message"]
    assert channel_secrets(NotificationChannel.objects.get(pk=pk)) == {"webhook_url": slack.url}


@pytest.mark.parametrize("body, field", [
    ({"kind": "fax", "name": "x", "config": {}}, "kind"),
    ({"kind": "webhook", "name": "x", "config": {}}, "kind"),
    ({"kind": "email", "name": "x", "config": {}}, "config.recipients"),
    ({"kind": "email", "name": "x", "config": {"recipients": "not-an-address"}}, "config.recipients"),
    ({"kind": "sms", "name": "x", "config": {"numbers": "555"}}, "config.numbers"),
    ({"kind": "email", "name": "x", "config": {"recipients": "a@example.com", "smtp": "x"}}, "config.smtp"),
    ({"kind": "pagerduty", "name": "x", "config": {"routing_key": "short"}}, "config.routing_key"),
    ({"kind": "email", "name": "bad name!", "config": {"recipients": "a@example.com"}}, "name"),
    ({"kind": "slack", "name": "x", "config": {"webhook_url": "https://127.0.0.1/x"},
      "templates": {"title": "{% include 'x' %}"}}, "templates.title"),
    ({"kind": "slack", "name": "x", "config": {"webhook_url": "https://127.0.0.1/x"},
      "templates": {"footer": "x"}}, "templates.footer"),
    ({"kind": "email", "name": "x", "config": {"recipients": "a@example.com"}, "rate_limit_per_minute": 0},
     "rate_limit_per_minute"),
])
def test_bad_input_is_422_naming_the_field(client, body, field):
    r = client.post("/api/v1/channels", body, format="json")
    assert r.status_code == 422, r.content
    assert r.json()["error"]["message"].startswith(field), r.json()
    assert not NotificationChannel.objects.exists()


def test_duplicate_name_is_refused(client, slack):
    assert create_slack(client, slack.url).status_code == 201
    r = create_slack(client, slack.url)
    assert r.status_code == 422 and "name" in r.json()["error"]["message"]


def test_templates_previewed_against_the_tenants_newest_alert(client, slack, make_alert):  # noqa: F811
    make_alert(title="Disk full on db-7")
    r = create_slack(client, slack.url, templates={"title": "ALERT {{ title }} ({{ severity }})"})
    assert r.status_code == 201, r.content
    assert "ALERT Disk full on db-7" in str(r.json()["preview"])


def test_test_action_reports_the_far_side(client, slack):
    pk = create_slack(client, slack.url).json()["id"]
    r = client.post(f"/api/v1/channels/{pk}/test")
    assert r.status_code == 200, r.content
    assert r.json()["ok"] is True and r.json()["status_code"] == 200 and r.json()["error"] == ""
    assert len(slack.requests) == 1 and slack.requests[0].json["text"]
    slack.script("channel_is_archived")
    r = client.post(f"/api/v1/channels/{pk}/test").json()
    assert r["ok"] is False and r["status_code"] == 410 and "410" in r["error"]
    assert r["response"] == "channel_is_archived"


def test_test_action_pagerduty_sends_the_routing_key(client):
    with PagerDutyServer(routing_key=ROUTING_KEY) as pd:
        pk = client.post("/api/v1/channels", {"kind": "pagerduty", "name": "pd", "config": {
            "routing_key": ROUTING_KEY, "base_url": pd.base_url}}, format="json").json()["id"]
        r = client.post(f"/api/v1/channels/{pk}/test").json()
    assert r["ok"] is True and r["status_code"] == 202, r
    assert pd.requests[0].route == "/v2/enqueue" and pd.requests[0].json["routing_key"] == ROUTING_KEY


def test_other_tenants_channels_are_404(api, make_token, client, other_tenant, slack):
    pk = create_slack(client, slack.url).json()["id"]
    other = api(make_token(other_tenant, "channels:write,channels:read"))
    for method, path in [("get", f"/api/v1/channels/{pk}"), ("patch", f"/api/v1/channels/{pk}"),
                         ("put", f"/api/v1/channels/{pk}"), ("delete", f"/api/v1/channels/{pk}"),
                         ("post", f"/api/v1/channels/{pk}/test")]:
        assert getattr(other, method)(path, {}, format="json").status_code == 404, (method, path)
    assert other.get("/api/v1/channels").json() == []
    assert not slack.requests and NotificationChannel.objects.filter(pk=pk).exists()
    # A tenant token cannot create in another tenant by naming it.
    assert create_slack(other, slack.url, name="x", tenant="acme").status_code == 404


def test_scopes(api, make_token, tenant, slack):
    reader = api(make_token(tenant, "channels:read"))
    writer = api(make_token(tenant, "channels:write,channels:read"))
    pk = create_slack(writer, slack.url).json()["id"]
    assert reader.get("/api/v1/channels").status_code == 200
    assert reader.get(f"/api/v1/channels/{pk}").status_code == 200
    assert create_slack(reader, slack.url, name="y").status_code == 403
    assert reader.patch(f"/api/v1/channels/{pk}", {"enabled": False}, format="json").status_code == 403
    assert reader.delete(f"/api/v1/channels/{pk}").status_code == 403
    assert reader.post(f"/api/v1/channels/{pk}/test").status_code == 403
    nothing = api(make_token(tenant, "alerts:read"))
    assert nothing.get("/api/v1/channels").status_code == 403
    assert not slack.requests


def test_platform_token_names_the_tenant(api, make_token, tenant, other_tenant, slack):
    platform = api(make_token(None, "channels:write,channels:read"))
    r = create_slack(platform, slack.url)
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("tenant")
    r = create_slack(platform, slack.url, tenant="globex")
    assert r.status_code == 201 and r.json()["tenant"] == "globex"
    assert create_slack(platform, slack.url, tenant="nope").status_code == 404
    assert [c["tenant"] for c in platform.get("/api/v1/channels").json()] == ["globex"]


def test_openapi_documents_the_routes():
    from drf_spectacular.generators import SchemaGenerator

    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    for path in ("/api/v1/channels", "/api/v1/channels/{id}", "/api/v1/channels/{id}/test", "/api/v1/policies",
                 "/api/v1/policies/preview", "/api/v1/policies/export", "/api/v1/policies/import"):
        assert path in paths, sorted(paths)


# --------------------------------------------------------------------------- admin (same services)


@pytest.fixture
def root(db):
    from django.contrib.auth import get_user_model
    from django.test import Client

    c = Client()
    c.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "a-long-password"))
    return c


def test_admin_channel_add_seals_secrets_audits_and_never_shows_them(root, tenant, slack):
    import json

    r = root.post("/admin/delivery/notificationchannel/add/", {
        "tenant": tenant.pk, "kind": "slack", "name": "admin-slack", "config": "{}", "templates": "{}",
        "secrets": json.dumps({"webhook_url": slack.url}), "enabled": "on"})
    assert r.status_code == 302, r.content.decode()[:2000]
    channel = NotificationChannel.objects.get(name="admin-slack")
    assert channel_secrets(channel) == {"webhook_url": slack.url}
    assert AuditEvent.objects.filter(action="channel.created", target_id=str(channel.pk)).exists()
    page = root.get(f"/admin/delivery/notificationchannel/{channel.pk}/change/").content.decode()
    assert slack.TOKEN_PATH not in page
    r = root.post("/admin/delivery/notificationchannel/", {"action": "send_test", "_selected_action": [channel.pk]},
                  follow=True)
    assert "admin-slack: 200" in r.content.decode() and len(slack.requests) == 1


def test_admin_refuses_to_delete_a_channel_a_policy_routes_to(root, tenant):
    from apps.delivery.models import NotificationPolicy

    used, unused = (NotificationChannel.objects.create(tenant=tenant, kind="email", name=name,
                                                       config={"recipients": "a@example.com"})
                    for name in ("used", "unused"))
    NotificationPolicy.objects.create(tenant=tenant, name="night", position=10).fallback_channels.add(used)
    page = root.get(f"/admin/delivery/notificationchannel/{used.pk}/delete/").content.decode()
    assert "email:used is used by policy night (fallback_channels)" in page
    root.post(f"/admin/delivery/notificationchannel/{used.pk}/delete/", {"post": "yes"})
    root.post("/admin/delivery/notificationchannel/", {"action": "delete_selected", "post": "yes",
                                                       "_selected_action": [used.pk, unused.pk]})
    assert set(NotificationChannel.objects.values_list("name", flat=True)) == {"used", "unused"}
    root.post("/admin/delivery/notificationchannel/", {"action": "delete_selected", "post": "yes",
                                                       "_selected_action": [unused.pk]})
    assert set(NotificationChannel.objects.values_list("name", flat=True)) == {"used"}


def test_admin_channel_refuses_unsafe_url_next_to_the_field(root, tenant, settings):
    import json

    settings.WEBHOOK_ALLOWED_NETWORKS = []
    r = root.post("/admin/delivery/notificationchannel/add/", {
        "tenant": tenant.pk, "kind": "slack", "name": "x", "config": "{}", "templates": "{}",
        "secrets": json.dumps({"webhook_url": "https://10.0.0.1/hook"}), "enabled": "on"})
    assert r.status_code == 200 and "private" in r.content.decode()
    assert not NotificationChannel.objects.exists()


def test_admin_policy_matchers_errors_other_tenants_channels_and_preview(root, tenant, other_tenant, make_alert):  # noqa: F811
    from apps.delivery.models import NotificationPolicy

    mine = NotificationChannel.objects.create(tenant=tenant, kind="email", name="mail",
                                              config={"recipients": "a@example.com"})
    theirs = NotificationChannel.objects.create(tenant=other_tenant, kind="email", name="their",
                                                config={"recipients": "b@example.com"})
    base = {"tenant": tenant.pk, "name": "p", "position": 10, "enabled": "on", "webhooks": "on", "group_by": "[]",
            "group_wait_seconds": 30, "group_interval_seconds": 300, "repeat_interval_seconds": 3600}
    r = root.post("/admin/delivery/notificationpolicy/add/", {**base, "matchers": '{"severity_at_least": "loud"}'})
    assert r.status_code == 200 and "matchers.severity_at_least" in r.content.decode()
    r = root.post("/admin/delivery/notificationpolicy/add/", {**base, "matchers": "{}", "channels": [theirs.pk]})
    assert r.status_code == 200 and not NotificationPolicy.objects.exists()
    r = root.post("/admin/delivery/notificationpolicy/add/", {**base, "matchers": '{"severities": ["critical"]}',
                                                             "channels": [mine.pk]})
    assert r.status_code == 302, r.content.decode()[:3000]
    policy = NotificationPolicy.objects.get()
    assert list(policy.channels.all()) == [mine]
    assert AuditEvent.objects.filter(action="policy.created", target_id=str(policy.pk)).exists()
    alert = make_alert(severity="critical")
    r = root.post("/admin/delivery/notificationpolicy/", {"action": "preview", "_selected_action": [policy.pk],
                                                          "alert_id": alert.pk}, follow=True)
    assert "policies p; channels email:mail (policy p)" in r.content.decode()


def test_a_tenant_without_alerts_previews_a_sample_of_its_own(api, make_token, other_tenant, slack):
    """No alert yet: the preview renders the sample alert, named after this tenant, not another."""
    globex = api(make_token(other_tenant, "channels:write,channels:read"))
    r = create_slack(globex, slack.url)
    assert r.status_code == 201, r.content
    shown = str(r.json()["preview"])
    assert "globex" in shown and "acme" not in shown
