"""The policies API: CRUD with per-field 422s, same-tenant channels, reorder, preview (matching the
routing: continue, regex labels, business hours), YAML/JSON export -> import round trip, all-or-
nothing import, tenant isolation (404) and scopes (403), audit rows."""
from __future__ import annotations

from datetime import UTC, datetime
from ipaddress import ip_network

import pytest
import yaml

from apps.audit.models import AuditEvent
from apps.delivery.models import NotificationChannel, NotificationPolicy
from tests.alerts.conftest import make_alert  # noqa: F401  (shared factory fixture)

pytestmark = pytest.mark.django_db

# A Tuesday, 10:00 in Berlin (business hours) and 23:00 Berlin (night).
TUESDAY_10 = datetime(2025, 3, 4, 9, 0, tzinfo=UTC)
TUESDAY_23 = datetime(2025, 3, 4, 22, 0, tzinfo=UTC)
BUSINESS = {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "18:00", "timezone": "Europe/Berlin"}


@pytest.fixture(autouse=True)
def loopback(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = [ip_network("127.0.0.0/8")]


@pytest.fixture
def client(api, make_token, tenant):
    return api(make_token(tenant, "channels:write,channels:read"))


def channel(tenant, name: str, kind: str = "email") -> NotificationChannel:
    config = {"email": {"recipients": f"{name}@example.com"}, "sms": {"numbers": "+15551234567"}}[kind]
    return NotificationChannel.objects.create(tenant=tenant, name=name, kind=kind, config=config)


def create(client, **body):
    return client.post("/api/v1/policies", body, format="json")


def test_crud_with_channels_and_audit(client, tenant):
    mail, sms = channel(tenant, "ops-mail"), channel(tenant, "oncall-sms", "sms")
    r = create(client, name="critical", matchers={"severity_at_least": "critical"}, channels=[mail.pk],
               fallback_channels=[sms.pk], group_by=["plugin"], group_wait_seconds=10)
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["channels"] == [mail.pk] and body["fallback_channels"] == [sms.pk] and body["position"] == 10
    assert body["group_by"] == ["plugin"] and body["group_wait_seconds"] == 10 and body["webhooks"] is True
    pk = body["id"]
    r = client.patch(f"/api/v1/policies/{pk}", {"channels": [sms.pk], "continue_matching": True}, format="json")
    assert r.status_code == 200 and r.json()["channels"] == [sms.pk] and r.json()["continue_matching"] is True
    assert client.get(f"/api/v1/policies/{pk}").json()["channels"] == [sms.pk]
    assert [p["name"] for p in client.get("/api/v1/policies").json()] == ["critical"]
    assert client.delete(f"/api/v1/policies/{pk}").status_code == 204
    assert not NotificationPolicy.objects.exists()
    events = list(AuditEvent.objects.filter(target_type="delivery.notificationpolicy", target_id=str(pk))
                  .order_by("id"))
    assert [e.action for e in events] == ["policy.created", "policy.updated", "policy.deleted"]
    assert events[1].data["channels"] == {"from": ["ops-mail"], "to": ["oncall-sms"]}


@pytest.mark.parametrize("body, field", [
    ({"name": "p", "matchers": {"severity_at_least": "huge"}}, "matchers.severity_at_least"),
    ({"name": "p", "matchers": {"labels_regex": {"env": "(unclosed"}}}, "matchers.labels_regex.env"),
    ({"name": "p", "matchers": {"colour": ["red"]}}, "matchers"),
    ({"name": "p", "matchers": {"active": {"timezone": "Mars/Olympus"}}}, "matchers.active.timezone"),
    ({"name": "p", "group_by": ["bad name!"]}, "group_by"),
    ({"name": "p", "group_interval_seconds": 0}, "group_interval_seconds"),
    ({"name": "p", "channels": [999999]}, "channels"),
    ({"name": "p", "fallback_channels": [999999]}, "fallback_channels"),
    ({"name": "no spaces allowed"}, "name"),
])
def test_bad_input_is_422_naming_the_field(client, body, field):
    r = create(client, **body)
    assert r.status_code == 422, r.content
    assert r.json()["error"]["message"].startswith(field), r.json()
    assert not NotificationPolicy.objects.exists()


@pytest.mark.parametrize("body, message", [
    # Were "channels: {0: [ErrorDetail(string='A valid integer is required.', code='invalid')]}" and
    # "...: not a valid RE2 pattern: b'missing ): (('".
    ({"name": "p", "channels": ["ops-mail"]}, "channels[0]: A valid integer is required."),
    ({"name": "p", "fallback_channels": [1, "x"], "group_by": "plugin"},
     "group_by: Expected a list of items but got type \"str\".; fallback_channels[1]: A valid integer is required."),
    ({"name": "p", "matchers": {"labels_regex": {"env": "(("}}},
     "matchers.labels_regex.env: not a valid RE2 pattern: missing ): (("),
])
def test_error_messages_are_plain_text(client, body, message):
    r = create(client, **body)
    assert r.status_code == 422, r.content
    assert r.json()["error"]["message"] == message


def test_other_tenants_channel_is_refused_naming_the_id(client, other_tenant):
    foreign = channel(other_tenant, "their-mail")
    r = create(client, name="p", channels=[foreign.pk])
    assert r.status_code == 422 and str(foreign.pk) in r.json()["error"]["message"]
    r = create(client, name="p", fallback_channels=[foreign.pk])
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("fallback_channels")
    assert not NotificationPolicy.objects.exists()


def test_reorder(client, tenant):
    ids = [create(client, name=n).json()["id"] for n in ("a", "b", "c")]
    r = client.post("/api/v1/policies/reorder", {"order": [ids[2], ids[0], ids[1]]}, format="json")
    assert r.status_code == 200, r.content
    assert [p["name"] for p in client.get("/api/v1/policies").json()] == ["c", "a", "b"]
    assert client.post("/api/v1/policies/reorder", {"order": [ids[0]]}, format="json").status_code == 422
    assert AuditEvent.objects.filter(action="policy.reordered", tenant_id=tenant.pk).count() == 1


def preview(client, **body):
    r = client.post("/api/v1/policies/preview", body, format="json")
    assert r.status_code == 200, r.content
    return r.json()


def test_preview_follows_continue_regex_labels_and_business_hours(client, tenant):
    pager, chat, mail = channel(tenant, "pager", "sms"), channel(tenant, "chat"), channel(tenant, "mail")
    create(client, name="prod-critical", matchers={"severity_at_least": "critical", "labels_regex": {"env": "prod-.*"}},
           channels=[pager.pk], continue_matching=True, webhooks=False)
    create(client, name="office", matchers={"active": BUSINESS}, channels=[chat.pk], webhooks=False)
    create(client, name="rest", channels=[mail.pk], webhooks=False)
    alert = {"severity": "critical", "labels": {"env": "prod-eu"}}
    day = preview(client, alert=alert, at=TUESDAY_10.isoformat())
    assert day["policies"] == ["prod-critical", "office"]  # continue, then the first match stops
    assert [c["name"] for c in day["channels"]] == ["pager", "chat"] and day["webhooks"] == []
    night = preview(client, alert=alert, at=TUESDAY_23.isoformat())
    assert night["policies"] == ["prod-critical", "rest"]
    staging = preview(client, alert={"severity": "critical", "labels": {"env": "staging"}}, at=TUESDAY_23.isoformat())
    assert staging["policies"] == ["rest"]  # the regex is a full match: "staging" is not prod-.*
    warning = preview(client, alert={"severity": "warning", "labels": {"env": "prod-eu"}}, at=TUESDAY_10.isoformat())
    assert warning["policies"] == ["office"]


def test_preview_by_alert_id_and_default_policy(client, make_alert, tenant):  # noqa: F811
    alert = make_alert(labels={"team": "payments"})
    out = preview(client, alert_id=alert.pk)
    assert out["default_policy"] is True and out["channels"] == []
    mail = channel(tenant, "payments-mail")
    create(client, name="payments", matchers={"labels": {"team": "payments"}}, channels=[mail.pk])
    out = preview(client, alert_id=alert.pk)
    assert out["policies"] == ["payments"] and out["channels"][0]["name"] == "payments-mail"


def test_preview_bad_input(client):
    r = client.post("/api/v1/policies/preview", {"alert": {"severity": "loud"}}, format="json")
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("alert.severity")
    r = client.post("/api/v1/policies/preview", {}, format="json")
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("alert_id")


DOC = """
policies:
  - name: prod-critical
    matchers:
      severity_at_least: critical
      labels_regex: {env: "prod-.*"}
    channels: [pager]
    continue_matching: true
    webhooks: false
    fallback_channels: [mail]
  - name: office-hours
    matchers:
      active: {days: [mon, tue, wed, thu, fri], start: "09:00", end: "18:00", timezone: Europe/Berlin}
    channels: [chat]
    group_by: [plugin, env]
    group_wait_seconds: 30
    group_interval_seconds: 300
    repeat_interval_seconds: 3600
"""


def import_yaml(client, text: str, **query):
    suffix = "?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else ""
    return client.post("/api/v1/policies/import" + suffix, text, content_type="application/yaml")


def test_yaml_import_then_export_round_trips(client, tenant):
    for name, kind in (("pager", "sms"), ("mail", "email"), ("chat", "email")):
        channel(tenant, name, kind)
    r = import_yaml(client, DOC)
    assert r.status_code == 200, r.content
    assert r.json() == {"created": ["prod-critical", "office-hours"], "updated": [], "unchanged": [], "deleted": []}
    exported = client.get("/api/v1/policies/export?format=yaml")
    assert exported.status_code == 200 and exported["Content-Type"].startswith("application/yaml")
    doc = yaml.safe_load(exported.content)
    assert [p["name"] for p in doc["policies"]] == ["prod-critical", "office-hours"]
    assert doc["policies"][0]["channels"] == ["pager"] and doc["policies"][0]["fallback_channels"] == ["mail"]
    assert doc["policies"][1]["group_by"] == ["plugin", "env"]
    again = import_yaml(client, exported.content.decode())
    assert again.json() == {"created": [], "updated": [], "unchanged": ["prod-critical", "office-hours"], "deleted": []}
    as_json = client.get("/api/v1/policies/export?format=json").json()
    assert as_json == doc
    assert client.post("/api/v1/policies/import", as_json, format="json").json()["unchanged"] == [
        "prod-critical", "office-hours"]
    assert AuditEvent.objects.filter(action="policy.created", tenant_id=tenant.pk).count() == 2


def test_import_replaces_and_reorders(client, tenant):
    for name in ("pager", "mail", "chat"):
        channel(tenant, name)
    import_yaml(client, DOC)
    create(client, name="extra")
    doc = yaml.safe_load(DOC)
    doc["policies"].reverse()
    doc["policies"][0]["channels"] = ["mail"]
    r = client.post("/api/v1/policies/import", doc, format="json")
    assert r.json() == {"created": [], "updated": ["office-hours", "prod-critical"], "unchanged": [],
                        "deleted": ["extra"]}
    assert [p["name"] for p in client.get("/api/v1/policies").json()] == ["office-hours", "prod-critical"]


def test_import_is_all_or_nothing_and_names_the_policy(client, tenant):
    for name in ("pager", "mail", "chat"):
        channel(tenant, name)
    import_yaml(client, DOC)
    before = list(NotificationPolicy.objects.order_by("id").values_list("name", "position", "matchers"))
    bad = yaml.safe_load(DOC)
    bad["policies"].insert(0, {"name": "new-one", "channels": ["mail"]})
    bad["policies"][2]["channels"] = ["no-such-channel"]
    r = client.post("/api/v1/policies/import", bad, format="json")
    assert r.status_code == 422, r.content
    error = r.json()["error"]
    assert error["message"].startswith("policies[2] (office-hours).channels: no channel named 'no-such-channel'")
    assert error["message"].endswith("nothing was imported")
    assert list(NotificationPolicy.objects.order_by("id").values_list("name", "position", "matchers")) == before
    assert not NotificationPolicy.objects.filter(name="new-one").exists()
    r = import_yaml(client, "policies:\n  - name: x\n    matchers: {severity_at_least: loud}\n  - {name: y, colour: 1}\n")
    assert r.status_code == 422 and len(r.json()["error"]["details"]["errors"]) == 2
    assert "policies[0] (x).matchers.severity_at_least" in r.json()["error"]["message"]
    assert import_yaml(client, "policies: [\n").status_code == 422
    assert list(NotificationPolicy.objects.order_by("id").values_list("name", "position", "matchers")) == before


def test_export_bad_format(client):
    r = client.get("/api/v1/policies/export?format=xml")
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("format")


def test_other_tenants_policies_are_404(api, make_token, client, other_tenant, tenant, make_alert):  # noqa: F811
    pk = create(client, name="mine").json()["id"]
    alert = make_alert()
    other = api(make_token(other_tenant, "channels:write,channels:read"))
    for method, path in [("get", f"/api/v1/policies/{pk}"), ("patch", f"/api/v1/policies/{pk}"),
                         ("put", f"/api/v1/policies/{pk}"), ("delete", f"/api/v1/policies/{pk}")]:
        assert getattr(other, method)(path, {}, format="json").status_code == 404, (method, path)
    assert other.post("/api/v1/policies/preview", {"alert_id": alert.pk}, format="json").status_code == 404
    assert other.post("/api/v1/policies/reorder", {"order": [pk]}, format="json").status_code == 422
    assert other.get("/api/v1/policies").json() == []
    assert other.get("/api/v1/policies/export?tenant=acme").status_code == 404
    assert import_yaml(other, "policies: []", tenant="acme").status_code == 404
    assert NotificationPolicy.objects.filter(pk=pk).exists()


def test_scopes(api, make_token, tenant):
    reader = api(make_token(tenant, "channels:read"))
    writer = api(make_token(tenant, "channels:write,channels:read"))
    pk = create(writer, name="p").json()["id"]
    assert reader.get("/api/v1/policies").status_code == 200
    assert reader.get("/api/v1/policies/export").status_code == 200
    assert reader.post("/api/v1/policies/preview", {"alert": {"severity": "info"}}, format="json").status_code == 200
    for method, path, body in [("post", "/api/v1/policies", {"name": "q"}), ("patch", f"/api/v1/policies/{pk}", {}),
                               ("delete", f"/api/v1/policies/{pk}", {}),
                               ("post", "/api/v1/policies/reorder", {"order": [pk]}),
                               ("post", "/api/v1/policies/import", {"policies": []})]:
        assert getattr(reader, method)(path, body, format="json").status_code == 403, (method, path)
    nothing = api(make_token(tenant, "alerts:read"))
    assert nothing.get("/api/v1/policies").status_code == 403
    assert nothing.post("/api/v1/policies/preview", {"alert": {}}, format="json").status_code == 403
    assert NotificationPolicy.objects.filter(pk=pk).exists()


def test_platform_token_names_the_tenant(api, make_token, tenant):
    platform = api(make_token(None, "channels:write,channels:read"))
    assert create(platform, name="p").status_code == 422
    assert create(platform, name="p", tenant="acme").json()["tenant"] == "acme"
    assert platform.get("/api/v1/policies/export").status_code == 422
    assert "name: p" in platform.get("/api/v1/policies/export?tenant=acme").content.decode()


@pytest.mark.django_db(transaction=True)
def test_a_channel_deleted_while_a_policy_links_it_is_a_422_not_a_500(client, tenant, monkeypatch):
    """The link rows' foreign keys are checked only at commit: a channel deleted between the
    policy's validation and its save failed that commit with a 500. The save locks the channels it
    links, so it finds the channel gone and says so."""
    import psycopg
    from django.db import connection

    from apps.delivery import channel_services

    mail = channel(tenant, "ops-mail")
    validate = channel_services.clean_policy

    def validate_then_lose_the_channel(*args, **kwargs):
        cleaned = validate(*args, **kwargs)
        with psycopg.connect(**connection.get_connection_params(), autocommit=True) as other:
            other.execute("DELETE FROM delivery_notificationchannel WHERE id = %s", [mail.pk])
        return cleaned

    if connection.vendor != "postgresql":
        pytest.skip("a second connection deleting meanwhile: PostgreSQL")
    monkeypatch.setattr(channel_services, "clean_policy", validate_then_lose_the_channel)
    r = create(client, name="critical", channels=[mail.pk])
    assert r.status_code == 422, r.content
    assert r.json()["error"]["message"] == f"channels: no channel {mail.pk} in this tenant (deleted meanwhile)"
    assert not NotificationPolicy.objects.exists()
