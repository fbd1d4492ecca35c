"""Configured channels end to end: policies route alerts to Slack, Teams, PagerDuty and Opsgenie
stand-ins (tests/delivery/vendors.py answer as each vendor documents), sent by a real Celery worker;
PagerDuty follows the alert's lifecycle from the console; a grouped Slack channel turns a storm into
a few digests naming every alert; a failing channel falls back; rate limits defer, never drop."""
from __future__ import annotations

import math
import re
import threading
import time
from contextlib import contextmanager
from ipaddress import ip_network

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client, override_settings

from apps.alerts.models import Alert
from apps.core import clock
from apps.delivery import dispatch, tasks
from apps.delivery.models import Delivery, DeliveryAttempt, NotificationChannel, NotificationPolicy
from apps.delivery.secrets import seal_channel_secrets
from apps.delivery.transports.channels import CONFIG_FIELDS, validate_config
from apps.tenants.models import FallbackContact, TenantMembership
from tests.delivery.peers import SmsServer, SmtpServer, fire_alert
from tests.delivery.vendors import Answer, OpsgenieServer, PagerDutyServer, SlackServer, TeamsServer
from tests.delivery.worker_support import worker_env
from tests.support.processes import celery_worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]
LOOPBACK = [ip_network("127.0.0.0/8")]


def make_channel(tenant, kind: str, name: str, config: dict, **fields) -> NotificationChannel:
    """A channel as the API stores it: secret config values sealed, the rest in ``config``."""
    with override_settings(WEBHOOK_ALLOWED_NETWORKS=LOOPBACK, WEBHOOK_ALLOW_HTTP=True):
        clean = validate_config(kind, config)
    secret = {k: v for k, v in clean.items() if CONFIG_FIELDS[kind][k]["secret"]}
    public = {k: v for k, v in clean.items() if not CONFIG_FIELDS[kind][k]["secret"]}
    return NotificationChannel.objects.create(tenant=tenant, kind=kind, name=name, config=public,
                                              secrets_encrypted=seal_channel_secrets(secret), **fields)


def route_to(tenant, *channels, name="all", webhooks=False, fallback=(), **fields) -> NotificationPolicy:
    policy = NotificationPolicy.objects.create(tenant=tenant, name=name, webhooks=webhooks, **fields)
    policy.channels.set(channels)
    policy.fallback_channels.set(fallback)
    return policy


@contextmanager
def beat(interval: float = 0.2):
    """What beat's deliver.sweep task does (sweep due rows, flush due groups), ticking in a thread."""
    stop = threading.Event()

    def loop() -> None:
        try:
            while not stop.wait(interval):
                tasks.deliver_sweep()
        finally:
            connection.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


@pytest.fixture
def peers():
    with SmtpServer() as smtp, SmsServer() as sms:
        yield smtp, sms


@pytest.fixture
def worker(peers, clean_redis, tmp_path):
    smtp, sms = peers
    env = worker_env(smtp, sms, WEBHOOK_ALLOW_HTTP="1")
    with celery_worker(name="deliver", concurrency=2, env=env, log_path=tmp_path / "worker.log"):
        with override_settings(WEBHOOK_ALLOWED_NETWORKS=LOOPBACK, WEBHOOK_ALLOW_HTTP=True,
                               DELIVERY_CLAIM_LEASE_SECONDS=5):
            with beat():
                yield


def vendor_setup(kind: str):
    if kind == "slack":
        server = SlackServer()
        return server, {"webhook_url": ""}, lambda s: s.url
    if kind == "teams":
        server = TeamsServer()
        return server, {"webhook_url": ""}, lambda s: s.url
    if kind == "pagerduty":
        server = PagerDutyServer()
        return server, {"routing_key": server.routing_key, "base_url": ""}, lambda s: s.url
    server = OpsgenieServer()
    return server, {"api_key": server.api_key, "base_url": ""}, lambda s: s.url


@pytest.mark.parametrize("kind", ["slack", "teams", "pagerduty", "opsgenie"])
def test_each_kind_is_delivered_by_the_worker(worker, tenant, plugin, kind):
    server, config, url = vendor_setup(kind)
    with server:
        config = {k: (url(server) if k in ("webhook_url", "base_url") else v) for k, v in config.items()}
        channel = make_channel(tenant, kind, f"{kind}-ops", config)
        route_to(tenant, channel)
        alert = fire_alert(tenant, plugin=plugin, title="Checkout error burst")
        wait_for(lambda: server.requests, timeout=60, what=f"{kind} request")
        delivery = wait_for(lambda: Delivery.objects.filter(notification_channel=channel, state="DELIVERED").first(),
                            timeout=20, what="DELIVERED")
    wait_for(lambda: Alert.objects.get(pk=alert.pk).delivery_state == "DELIVERED", timeout=10, what="alert state")
    [request] = server.requests
    assert "Checkout error burst" in request.body.decode()
    assert delivery.channel == kind and delivery.attempts == 1
    stored = bytes(delivery.body)
    for key, spec in CONFIG_FIELDS[kind].items():  # the stored request never holds a secret
        if spec["secret"] and config.get(key):
            assert config[key].encode() not in stored
    if kind == "pagerduty":
        assert request.json["routing_key"] == server.routing_key and request.json["event_action"] == "trigger"
    if kind == "opsgenie":
        assert request.headers["authorization"] == f"GenieKey {server.api_key}"


def test_pagerduty_follows_acknowledge_and_resolve_in_the_console(worker, tenant, plugin):
    with PagerDutyServer() as pd:
        channel = make_channel(tenant, "pagerduty", "pd", {"routing_key": pd.routing_key, "base_url": pd.url})
        route_to(tenant, channel)
        alert = fire_alert(tenant, plugin=plugin)
        wait_for(lambda: len(pd.events) == 1, timeout=60, what="trigger")
        user = User.objects.create_user("alice", password="x")
        TenantMembership.objects.create(user=user, tenant=tenant, role="operator")
        console = Client()
        console.force_login(user)
        assert console.post(f"/alerts/{alert.pk}/ack", {"note": "on it"}).status_code == 302
        wait_for(lambda: len(pd.events) == 2, timeout=60, what="acknowledge")
        assert console.post(f"/alerts/{alert.pk}/resolve", {"note": "fixed"}).status_code == 302
        wait_for(lambda: len(pd.events) == 3, timeout=60, what="resolve")
    assert [e["event_action"] for e in pd.events] == ["trigger", "acknowledge", "resolve"]
    keys = {e["dedup_key"] for e in pd.events}
    assert len(keys) == 1 and pd.incidents == {keys.pop(): "resolved"}


def test_permanent_failure_falls_back_to_the_policys_fallback_channel(worker, tenant, peers):
    smtp, _ = peers
    with SlackServer("channel_not_found") as slack:
        chat = make_channel(tenant, "slack", "chat", {"webhook_url": slack.url})
        mail = make_channel(tenant, "email", "oncall-mail", {"recipients": "oncall@acme.example, lead@acme.example"})
        route_to(tenant, chat, fallback=[mail])
        alert = fire_alert(tenant, title="Payment errors")
        wait_for(lambda: smtp.envelopes, timeout=60, what="fallback email")
    row = Delivery.objects.get(notification_channel=chat)
    assert row.state == "FAILED" and row.last_status_code == 404 and row.attempts == 1  # permanent: no retry
    fallback = Delivery.objects.get(notification_channel=mail)
    assert fallback.source_id == row.pk
    assert sorted(smtp.envelopes[0].rcpt_tos) == ["lead@acme.example", "oncall@acme.example"]
    assert b"Payment errors" in smtp.envelopes[0].content
    wait_for(lambda: Alert.objects.get(pk=alert.pk).delivery_state == "FAILED", timeout=10, what="FAILED")


def test_retry_after_is_honoured_then_delivered(worker, tenant):
    with TeamsServer(Answer(429, "Too many requests", {"Retry-After": "2"}), "accepted") as teams:
        channel = make_channel(tenant, "teams", "teams", {"webhook_url": teams.url})
        route_to(tenant, channel)
        fire_alert(tenant)
        wait_for(lambda: Delivery.objects.filter(notification_channel=channel, state="DELIVERED").exists(),
                 timeout=60, what="delivered after the 429")
    assert [r.at for r in teams.requests][1] - teams.requests[0].at >= 1.9
    assert list(DeliveryAttempt.objects.order_by("number").values_list("status_code", flat=True)) == [429, 202]


def test_three_failures_downgrade_the_channel_to_the_tenants_contacts(worker, tenant, peers):
    smtp, sms = peers
    FallbackContact.objects.create(tenant=tenant, kind="email", value="oncall@acme.example")
    FallbackContact.objects.create(tenant=tenant, kind="sms", value="+14155550100")
    with OpsgenieServer("server_error", "server_error", "server_error") as og:
        channel = make_channel(tenant, "opsgenie", "og", {"api_key": og.api_key, "base_url": og.url})
        route_to(tenant, channel)
        alert = fire_alert(tenant)
        wait_for(lambda: smtp.envelopes and sms.messages, timeout=60, what="fallback email and SMS")
        wait_for(lambda: Delivery.objects.filter(notification_channel=channel, state="DELIVERED").exists(),
                 timeout=60, what="the late success")
    channel.refresh_from_db()
    row = Delivery.objects.get(notification_channel=channel)
    assert row.downgraded_at is not None and row.attempt_log.filter(started_at__lte=row.downgraded_at).count() == 3
    assert channel.failure_streak == 0 and channel.downgraded_at is None  # restored by the success
    assert Alert.objects.get(pk=alert.pk).delivery_state == "DELIVERED"


def test_a_storm_to_a_grouped_slack_channel_sends_few_digests_naming_every_alert(worker, tenant, plugin,
                                                                                   other_plugin_of_tenant):
    group_interval, storm = 2, 500
    with SlackServer() as slack:
        chat = make_channel(tenant, "slack", "chat", {"webhook_url": slack.url}, rate_limit_per_minute=1000)
        route_to(tenant, chat, group_by=["plugin"], group_wait_seconds=1, group_interval_seconds=group_interval)
        started = time.monotonic()
        ids = []
        for i in range(storm):
            ids.append(fire_alert(tenant, plugin=plugin if i % 2 else other_plugin_of_tenant, title=f"storm {i}").pk)
        duration = time.monotonic() - started
        named = set()

        def all_named():
            named.clear()
            for r in slack.requests:
                named.update(int(n) for n in re.findall(r"#(\d+) \[", r.body.decode()))
            return named >= set(ids)

        wait_for(all_named, timeout=90, what="every alert named in a digest")
    per_group: dict[str, int] = {}
    for r in slack.requests:
        which = "checkout" if "checkout" in r.json["text"].split("\n", 1)[0] else "cart"
        per_group[which] = per_group.get(which, 0) + 1
    bound = math.ceil((duration + 1) / group_interval) + 1  # +1 s: group_wait before the first flush
    print({"storm": storm, "fired_in_s": round(duration, 1), "messages_per_group": per_group, "bound": bound})
    assert set(per_group) == {"checkout", "cart"}
    assert all(n <= bound for n in per_group.values()), (per_group, bound, duration)
    assert len(slack.requests) < storm / 10
    assert not Delivery.objects.filter(notification_channel=chat, alert__isnull=False).exists()  # no per-alert rows


@pytest.fixture
def other_plugin_of_tenant(tenant):
    from apps.tenants.models import Plugin

    return Plugin.objects.create(tenant=tenant, slug="cart", name="Cart")


@pytest.mark.django_db
def test_rate_limit_defers_the_excess_without_an_attempt(tenant, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = LOOPBACK
    settings.WEBHOOK_ALLOW_HTTP = True
    with SlackServer() as slack:
        chat = make_channel(tenant, "slack", "chat", {"webhook_url": slack.url}, rate_limit_per_minute=2)
        route_to(tenant, chat)
        for i in range(4):
            fire_alert(tenant, title=f"a{i}")
        rows = list(Delivery.objects.filter(notification_channel=chat).order_by("pk").values_list("pk", flat=True))
        assert dispatch.process(rows) == 2
    assert len(slack.requests) == 2
    waiting = Delivery.objects.filter(notification_channel=chat, state="PENDING")
    assert waiting.count() == 2 and not DeliveryAttempt.objects.filter(delivery__in=waiting).exists()
    assert all(d.attempts == 0 and d.claim_token == "" for d in waiting)


@pytest.mark.django_db
def test_rate_limits_of_several_channels_in_one_batch_and_across_batches(tenant, settings, clean_redis):
    settings.WEBHOOK_ALLOWED_NETWORKS = LOOPBACK
    settings.WEBHOOK_ALLOW_HTTP = True
    with SlackServer() as slack, TeamsServer() as teams:
        chat = make_channel(tenant, "slack", "chat", {"webhook_url": slack.url}, rate_limit_per_minute=2)
        room = make_channel(tenant, "teams", "room", {"webhook_url": teams.url}, rate_limit_per_minute=3)
        route_to(tenant, chat, room)
        for i in range(4):
            fire_alert(tenant, title=f"a{i}")
        rows = list(Delivery.objects.order_by("pk").values_list("pk", flat=True))
        assert dispatch.process(rows[:2]) == 2  # one of each: both within their limits
        assert dispatch.process(rows) == 3  # chat has 1 left of 2, room 2 left of 3
        Delivery.objects.filter(state="PENDING").update(next_attempt_at=clock.now())  # due again at once
        assert dispatch.process(rows) == 0  # both windows are full, for every later batch too
    assert (len(slack.requests), len(teams.requests)) == (2, 3)
    assert Delivery.objects.filter(notification_channel=chat, state="PENDING", attempts=0).count() == 2
    assert Delivery.objects.filter(notification_channel=room, state="PENDING", attempts=0).count() == 1
