"""Console Channels and Policies pages: what operator / auditor / tenant member see, the Test button
(POST with CSRF, refused to read-only roles), the preview form, and per-channel rows on the alert."""
from __future__ import annotations

from ipaddress import ip_network

import pytest

from apps.delivery import channel_services
from apps.delivery.models import Channel, Delivery, DeliveryAttempt, DeliveryState
from apps.tenants.models import Plugin
from tests.delivery.vendors import SlackServer

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def loopback(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = [ip_network("127.0.0.0/8")]


@pytest.fixture
def slack():
    with SlackServer() as server:
        yield server


@pytest.fixture
def channels(tenant, other_tenant, slack):
    mine, _ = channel_services.create_channel(tenant=tenant, kind="slack", name="acme-chat",
                                              config={"webhook_url": slack.url})
    theirs, _ = channel_services.create_channel(tenant=other_tenant, kind="email", name="globex-mail",
                                                config={"recipients": "ops@globex.example"})
    return mine, theirs


def test_operator_sees_every_tenant_and_the_test_button_works_with_csrf(login, channels, slack):
    mine, _ = channels
    client = login("operator", csrf=True)
    page = client.get("/channels")
    html = page.content.decode()
    assert page.status_code == 200 and "acme-chat" in html and "globex-mail" in html
    assert slack.TOKEN_PATH not in html
    assert f'action="/channels/{mine.pk}/test"' in html
    # Without the token the POST is refused and nothing is sent.
    assert client.post(f"/channels/{mine.pk}/test").status_code == 403 and not slack.requests
    token = client.cookies["csrftoken"].value
    r = client.post(f"/channels/{mine.pk}/test", {"csrfmiddlewaretoken": token}, follow=True)
    assert r.status_code == 200 and "Test sent: slack:acme-chat answered 200" in r.content.decode()
    assert len(slack.requests) == 1
    slack.script("channel_not_found")
    r = client.post(f"/channels/{mine.pk}/test", {"csrfmiddlewaretoken": token}, follow=True)
    assert "Test failed: slack:acme-chat answered 404" in r.content.decode()


def test_auditor_reads_but_cannot_test(login, channels, slack):
    mine, _ = channels
    client = login("auditor")
    html = client.get("/channels").content.decode()
    assert "acme-chat" in html and "/test" not in html
    assert client.post(f"/channels/{mine.pk}/test").status_code == 403
    assert client.get("/policies").status_code == 200
    assert not slack.requests


def test_tenant_member_sees_only_their_tenant(login, channels, slack):
    mine, theirs = channels
    client = login("member")
    html = client.get("/channels").content.decode()
    assert "acme-chat" in html and "globex-mail" not in html
    assert client.post(f"/channels/{theirs.pk}/test").status_code == 404
    assert client.post(f"/channels/{mine.pk}/test").status_code == 302 and len(slack.requests) == 1
    viewer = login("member-viewer")
    assert viewer.post(f"/channels/{mine.pk}/test").status_code == 403
    assert len(slack.requests) == 1


def test_policies_page_and_preview(login, channels, tenant, other_tenant, make_alert):
    mine, theirs = channels
    channel_services.create_policy(tenant=tenant, name="prod-chat", matchers={"labels_regex": {"env": "prod-.*"}},
                                   channels=[mine.pk], group_by=["plugin"], continue_matching=True)
    channel_services.create_policy(tenant=other_tenant, name="globex-all", channels=[theirs.pk])
    alert = make_alert(labels={"env": "prod-eu"})
    other_alert = make_alert(tenant=other_tenant, plugin=Plugin.objects.create(tenant=other_tenant, slug="billing"))
    member = login("member")
    html = member.get("/policies").content.decode()
    assert "prod-chat" in html and "globex-all" not in html and "grouped" not in html and "by plugin" in html
    html = member.get(f"/policies?alert_id={alert.pk}").content.decode()
    assert 'id="preview"' in html and "acme-chat" in html and "grouped by plugin" in html
    assert member.get(f"/policies?alert_id={other_alert.pk}").status_code == 404
    assert "must be a number" in member.get("/policies?alert_id=abc").content.decode()
    operator = login("operator")
    assert "globex-all" in operator.get("/policies").content.decode()


def test_alert_detail_shows_per_channel_attempts(login, channels, make_alert):
    mine, _ = channels
    alert = make_alert()
    now = alert.created_at
    d = Delivery.objects.create(tenant=alert.tenant, alert=alert, channel=Channel.SLACK, notification_channel=mine,
                                event_type="alert.triggered", msg_id="msg_console_1", body=b"{}",
                                state=DeliveryState.DELIVERED, attempts=2, created_at=now, expires_at=now)
    DeliveryAttempt.objects.create(delivery=d, number=1, channel=Channel.SLACK, started_at=now, status_code=429,
                                   error="HTTP 429 from Slack (127.0.0.1) (rate limited)")
    DeliveryAttempt.objects.create(delivery=d, number=2, channel=Channel.SLACK, started_at=now, status_code=200,
                                   success=True)
    html = login("auditor").get(f"/alerts/{alert.pk}").content.decode()
    section = html[html.index("<h2>Deliveries</h2>"):]
    assert "Slack" in section and "acme-chat" in section and "rate limited" in section
