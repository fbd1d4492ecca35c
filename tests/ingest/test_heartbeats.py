"""Heartbeats: POST /api/v1/heartbeats/<name> pings, the sweep raises one alert per missed heartbeat,
the next ping resolves it (issue 14)."""
from __future__ import annotations

import threading
from datetime import timedelta
from ipaddress import ip_network

import orjson
import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client, override_settings

from alertcenter.celery import app
from apps.alerts.models import ACTIVE_STATES, Alert, AlertState, TimelineEntry
from apps.delivery.services import create_endpoint
from apps.ingest.heartbeats import services
from apps.ingest.heartbeats.services import sweep_missed
from apps.ingest.models import Heartbeat, HeartbeatState
from apps.tenants.models import Plugin, TenantMembership
from tests.alerts.conftest import T0, Clock
from tests.delivery.peers import Hook, peer_env
from tests.support.processes import celery_worker, wait_for

URL = "/api/v1/heartbeats"


@pytest.fixture
def frozen(monkeypatch) -> Clock:
    from apps.core import clock

    fake = Clock(T0)
    monkeypatch.setattr(clock, "now", fake)
    return fake


@pytest.fixture
def ingest(api, make_token, tenant):
    return api(make_token(tenant, "alerts:ingest,alerts:read"))


def ping(client, name: str = "nightly-backup", query: str = "", body: dict | None = None):
    return client.post(f"{URL}/{name}{query}", data=orjson.dumps(body) if body is not None else b"",
                       content_type="application/json")


# --------------------------------------------------------------------------- pings


def test_first_ping_creates_with_defaults_and_the_next_one_moves_the_due_time(ingest, tenant, frozen, settings):
    assert (settings.HEARTBEAT_DEFAULT_TIMEOUT, settings.HEARTBEAT_DEFAULT_GRACE) == (300, 60)
    resp = ping(ingest)
    assert resp.status_code == 200, resp.content
    assert resp.json() == {"name": "nightly-backup", "state": "up", "timeout_seconds": 300, "grace_seconds": 60,
                           "severity": "critical", "last_seen_at": T0.isoformat(),
                           "next_due_at": (T0 + timedelta(minutes=6)).isoformat(), "created": True,
                           "resolved_alert_id": None}
    frozen.advance(minutes=4)
    body = ping(ingest).json()
    assert body["created"] is False and body["next_due_at"] == (T0 + timedelta(minutes=10)).isoformat()
    hb = Heartbeat.objects.get(tenant=tenant, name="nightly-backup")
    assert (hb.last_seen_at, hb.state, hb.timeout_seconds) == (T0 + timedelta(minutes=4), "up", 300)


def test_settings_from_query_or_body_are_kept_until_changed(ingest, tenant, frozen):
    body = ping(ingest, query="?timeout=26h&grace=30m&plugin=backups").json()
    assert (body["timeout_seconds"], body["grace_seconds"]) == (26 * 3600, 1800)
    body = ping(ingest, body={"severity": "warning"}).json()  # timeout not named: the stored one stays
    assert (body["timeout_seconds"], body["severity"]) == (26 * 3600, "warning")
    assert body["next_due_at"] == (T0 + timedelta(hours=26, minutes=30)).isoformat()
    hb = Heartbeat.objects.get(tenant=tenant)
    assert hb.plugin == Plugin.objects.get(tenant=tenant, slug="backups")


@pytest.mark.parametrize("query, body, field, words", [
    ("?timeout=soon", None, "timeout", "bad duration 'soon'"),
    ("?timeout=30s", None, "timeout", "30s is out of bounds (1m to 30d)"),
    ("?timeout=31d", None, "timeout", "out of bounds"),
    ("", {"grace": "31d"}, "grace", "out of bounds (0s to 30d)"),
    ("", {"severity": "loud"}, "severity", "unknown severity 'loud'"),
    ("?timout=5m", None, "timout", "unknown parameter"),
    ("?timeout=5m", {"timeout": "10m"}, "timeout", "given twice with different values"),
    ("", {"plugin": "no spaces allowed"}, "plugin", "is not a plugin id"),
    ("", [1, 2], "body", "must be a JSON object"),
])
def test_bad_pings_are_422_naming_the_field_and_store_nothing(ingest, query, body, field, words):
    resp = ping(ingest, query=query, body=body)
    assert resp.status_code == 422, resp.content
    error = resp.json()["error"]
    assert error["details"]["field"] == field and words in error["message"], error
    assert not Heartbeat.objects.exists()


def test_bad_name_and_body_that_is_not_json(ingest):
    resp = ping(ingest, name="-starts-with-dash")
    assert resp.status_code == 422 and resp.json()["error"]["details"]["field"] == "name"
    resp = ingest.post(f"{URL}/ok", data=b"{nope", content_type="application/json")
    assert resp.status_code == 422 and resp.json()["error"]["details"]["field"] == "body"
    resp = ingest.post(f"{URL}/ok", data=b"{}" + b" " * 70_000, content_type="application/json")
    assert resp.status_code == 413
    assert not Heartbeat.objects.exists()


def test_scopes(api, make_token, tenant):
    reader = api(make_token(tenant, "alerts:read"))
    assert ping(reader).status_code == 403
    assert reader.delete(f"{URL}/nightly-backup").status_code == 403
    pinger = api(make_token(tenant, "alerts:ingest"))
    assert ping(pinger).status_code == 200
    assert pinger.get(URL).status_code == 403
    assert reader.get(URL).status_code == 200
    # The list route takes no POST (it must never reach the log intake it shares plumbing with).
    assert reader.post(URL, data=b"[]", content_type="application/json").status_code == 405
    assert api().post(f"{URL}/x").status_code == 401
    assert Heartbeat.objects.count() == 1


def test_tenants_are_isolated(api, make_token, tenant, other_tenant, ingest):
    ping(ingest)
    globex = api(make_token(other_tenant, "alerts:ingest,alerts:read"))
    assert globex.get(f"{URL}/nightly-backup").status_code == 404
    assert globex.delete(f"{URL}/nightly-backup").status_code == 404
    assert globex.get(URL).json()["results"] == []
    wrong = ping(globex, query="?tenant=acme")
    assert wrong.status_code == 403 and "bound to tenant 'globex'" in wrong.json()["error"]["message"]
    assert ping(globex).json()["created"] is True  # the same name in another tenant is another heartbeat
    assert Heartbeat.objects.filter(name="nightly-backup").count() == 2
    assert [h["tenant"] for h in ingest.get(URL).json()["results"]] == ["acme"]

    platform = api(make_token(None, "alerts:ingest,alerts:read", name="platform"))
    assert ping(platform).json()["error"]["details"]["field"] == "tenant"
    assert ping(platform, query="?tenant=globex").json()["created"] is False
    assert len(platform.get(URL).json()["results"]) == 2
    assert platform.delete(f"{URL}/nightly-backup?tenant=globex").status_code == 204
    assert list(Heartbeat.objects.values_list("tenant__slug", flat=True)) == ["acme"]


def test_per_tenant_limit(ingest, api, make_token, other_tenant, settings):
    settings.HEARTBEAT_MAX_PER_TENANT = 2
    assert ping(ingest, "a").status_code == ping(ingest, "b").status_code == 200
    resp = ping(ingest, "c")
    assert resp.status_code == 422
    error = resp.json()["error"]
    assert error["code"] == "heartbeat_limit" and "limit of 2 heartbeats (HEARTBEAT_MAX_PER_TENANT)" in error["message"]
    assert ping(ingest, "a").status_code == 200  # known heartbeats still ping
    assert ping(api(make_token(other_tenant, "alerts:ingest")), "c").status_code == 200
    assert Heartbeat.objects.filter(tenant__slug="acme").count() == 2


def test_ping_of_an_up_heartbeat_moves_it_and_leaves_down_ones_to_the_slow_path(tenant, frozen):
    Heartbeat.objects.create(tenant=tenant, name="nightly", timeout_seconds=300, grace_seconds=60, last_seen_at=T0,
                             next_due_at=T0 + timedelta(minutes=6), created_at=T0)
    now = T0 + timedelta(minutes=2)
    args = {"tenant_id": tenant.pk, "name": "nightly", "now": now, "timeout": 600, "grace": None, "severity": None,
            "plugin_id": None}
    done = services.ping_up(**args)
    assert done.next_due_at == now + timedelta(minutes=11)
    assert (done.timeout_seconds, done.grace_seconds, done.severity) == (600, 60, "critical")
    assert list(Heartbeat.objects.values_list("last_seen_at", "timeout_seconds")) == [(now, 600)]
    Heartbeat.objects.update(state=HeartbeatState.DOWN)  # DOWN rows are the slow path's
    assert services.ping_up(**args) is None
    assert services.ping_up(**{**args, "name": "unknown"}) is None


# --------------------------------------------------------------------------- missed heartbeats


def test_missed_heartbeat_raises_one_alert_and_the_next_ping_resolves_it(ingest, tenant, frozen):
    ping(ingest, query="?timeout=5m&grace=1m&severity=warning")
    frozen.advance(minutes=5, seconds=30)
    assert sweep_missed() == 0
    assert ingest.get(f"{URL}/nightly-backup").json()["state"] == "late"

    frozen.advance(seconds=31)
    assert sweep_missed() == 1
    alert = Alert.objects.get()
    assert (alert.source, alert.severity, alert.state, alert.title) == ("heartbeat", "warning", AlertState.OPEN,
                                                                       "Heartbeat nightly-backup missed")
    assert alert.summary == ("No heartbeat from nightly-backup since 2026-03-01T12:00:00+00:00 (timeout 5m, "
                             "grace 1m).")
    assert alert.labels == {"heartbeat": "nightly-backup"}
    hb = Heartbeat.objects.get()
    assert (hb.state, hb.alert_id) == ("down", alert.pk)
    listed = ingest.get(URL).json()["results"][0]
    assert (listed["state"], listed["alert_id"]) == ("down", alert.pk)

    for _ in range(3):  # stays down: nothing more raised or counted
        frozen.advance(hours=1)
        assert sweep_missed() == 0
    alert.refresh_from_db()
    assert Alert.objects.count() == 1 and alert.count == 1 and alert.state == AlertState.OPEN

    body = ping(ingest).json()
    assert (body["state"], body["resolved_alert_id"]) == ("up", alert.pk)
    alert.refresh_from_db()
    assert (alert.state, alert.resolved_by) == (AlertState.RESOLVED, "heartbeat")
    entry = alert.timeline.filter(kind=TimelineEntry.Kind.RESOLVED).get()
    assert entry.message == "heartbeat received again after 186 min"  # 12:00 -> 15:06
    assert ping(ingest).json()["resolved_alert_id"] is None

    frozen.advance(minutes=7)  # missed again: the alert is raised again (reopened within the window)
    assert sweep_missed() == 1
    assert Alert.objects.filter(state__in=ACTIVE_STATES).count() == 1


def test_deleting_a_down_heartbeat_resolves_its_alert(ingest, frozen):
    ping(ingest)
    frozen.advance(minutes=7)
    sweep_missed()
    assert ingest.delete(f"{URL}/nightly-backup").status_code == 204
    alert = Alert.objects.get()
    assert alert.state == AlertState.RESOLVED and not Heartbeat.objects.exists()
    assert alert.timeline.get(kind=TimelineEntry.Kind.RESOLVED).message == "heartbeat nightly-backup deleted"
    assert ingest.delete(f"{URL}/nightly-backup").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_sweeps_raise_one_alert_per_missed_heartbeat(tenant, frozen):
    for i in range(30):
        Heartbeat.objects.create(tenant=tenant, name=f"job-{i}", timeout_seconds=60, grace_seconds=0,
                                 last_seen_at=T0, next_due_at=T0 + timedelta(minutes=1), created_at=T0)
    frozen.advance(minutes=2)
    start = threading.Barrier(2)
    raised: list[int] = []

    def sweep():
        try:
            start.wait()
            raised.append(sweep_missed())
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sum(raised) == 30, raised
    assert Alert.objects.count() == 30
    assert sorted(Alert.objects.values_list("labels__heartbeat", flat=True)) == sorted(f"job-{i}" for i in range(30))
    assert set(Heartbeat.objects.values_list("state", flat=True)) == {"down"}


@pytest.mark.django_db(transaction=True)
def test_a_ping_racing_the_sweep_waits_for_it_and_resolves_the_alert_it_raised(ingest, tenant, frozen,
                                                                               monkeypatch):
    from apps.ingest.heartbeats import services

    ping(ingest, query="?timeout=5m&grace=0")
    frozen.advance(minutes=6)
    claimed, release = threading.Event(), threading.Event()
    fire = services.fire_external

    def slow_fire(**kwargs):  # the sweep holds its claim (row lock) here until released
        claimed.set()
        release.wait(10)
        return fire(**kwargs)

    monkeypatch.setattr(services, "fire_external", slow_fire)
    answers: list = []

    def in_thread(fn):
        def run():
            try:
                answers.append(fn())
            finally:
                connection.close()
        t = threading.Thread(target=run)
        t.start()
        return t

    sweeper = in_thread(sweep_missed)
    assert claimed.wait(10)
    pinger = in_thread(lambda: ping(ingest).json())
    pinger.join(0.5)
    assert pinger.is_alive()  # blocked on the sweep's row lock, not answered with a stale "up"
    release.set()
    sweeper.join(10)
    pinger.join(10)
    body = next(a for a in answers if isinstance(a, dict))
    alert = Alert.objects.get()
    assert (body["state"], body["resolved_alert_id"]) == ("up", alert.pk)
    assert alert.state == AlertState.RESOLVED and Heartbeat.objects.get().state == "up"


# --------------------------------------------------------------------------- console


def console(username: str, *, staff: bool = False, member_of=None) -> Client:
    user = User.objects.create_user(username=username, password="x" * 12, is_staff=staff)
    if staff:
        user.groups.add(Group.objects.get(name="operators"))
    if member_of is not None:
        TenantMembership.objects.create(user=user, tenant=member_of, role="viewer")
    client = Client()
    client.force_login(user)
    return client


def test_console_page_lists_states_and_members_see_only_their_tenants(ingest, api, make_token, tenant,
                                                                     other_tenant, frozen):
    ping(ingest, "up-job", query="?timeout=1h")
    ping(ingest, "late-job", query="?timeout=5m&grace=10m")
    ping(ingest, "down-job", query="?timeout=1m&grace=0")
    ping(api(make_token(other_tenant, "alerts:ingest")), "globex-job")
    frozen.advance(minutes=6)
    sweep_missed()  # down-job and globex-job go down
    alert = Alert.objects.get(labels__heartbeat="down-job")

    page = console("olga", staff=True).get("/heartbeats").content.decode()
    for name, state in (("up-job", "up"), ("late-job", "late"), ("down-job", "down"), ("globex-job", "down")):
        assert f'data-heartbeat="{name}" data-state="{state}"' in page
    assert f'href="/alerts/{alert.pk}"' in page and "1h / 1m" in page

    member = console("mia", member_of=tenant).get("/heartbeats")
    assert member.status_code == 200
    assert "down-job" in member.content.decode() and "globex-job" not in member.content.decode()


# --------------------------------------------------------------------------- end to end


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_missed_heartbeat_is_delivered_by_a_real_worker_and_the_ping_resolves_it(ingest, tenant, clean_redis,
                                                                                  settings, tmp_path):
    # Real time here (the worker is another process): a 1 s timeout makes the miss quick.
    settings.HEARTBEAT_MIN_TIMEOUT = 1
    log = tmp_path / "worker.log"
    with Hook() as hook, override_settings(WEBHOOK_ALLOWED_NETWORKS=[ip_network("127.0.0.0/8")]):
        create_endpoint(tenant=tenant, url=hook.url, event_types=["alert.triggered", "alert.updated"])
        with celery_worker(name="heartbeats", queues="default,deliver", env=peer_env(), log_path=log):
            assert ping(ingest, "cron-job", query="?timeout=1s&grace=0").status_code == 200

            def raised():
                app.send_task("heartbeats.sweep")
                return Alert.objects.filter(source="heartbeat", state__in=ACTIVE_STATES).first()

            alert = wait_for(raised, timeout=60, interval=1.0, what=f"heartbeat alert raised (see {log})")
            triggered = wait_for(lambda: [r for r in hook.requests if b'"alert.triggered"' in r["body"]],
                                 timeout=60, what=f"alert.triggered delivered (see {log})")
            ping(ingest, "cron-job", query="?timeout=1h")  # recovered, and no miss while the test ends
            resolved = wait_for(lambda: [r for r in hook.requests if b'"alert.updated"' in r["body"]
                                         and b'"state":"RESOLVED"' in r["body"]],
                                timeout=60, what=f"alert.updated (resolved) delivered (see {log})")
    data = orjson.loads(triggered[0]["body"])["data"]
    assert data["title"] == "Heartbeat cron-job missed" and triggered[0]["headers"]["x-powerx-alert-id"] == str(alert.pk)
    assert len(resolved) == 1 and orjson.loads(resolved[0]["body"])["data"]["resolved_by"] == "heartbeat"
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED and alert.resolved_by == "heartbeat"
    assert len(triggered) == 1 and Alert.objects.count() == 1
