"""GET /api/v1/stream against a real uvicorn process (the ``stream`` process type): replay by
Last-Event-ID gives exactly the missed ids, contiguous; another tenant's events never appear;
keep-alive comments; auth by token and by console session (with CORS for the console origin);
polling when there is no Redis; the sync web workers refuse with 503."""
from __future__ import annotations

import json
import time

import pytest
import requests
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from apps.stream import services
from apps.tenants.models import Tenant, TenantMembership

from .server import SSEClient, stream_server

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
CONSOLE_ORIGIN = "http://console.test:8000"


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker, tmp_path_factory):
    with django_db_blocker.unblock():
        with stream_server(tmp_path_factory.mktemp("stream"), STREAM_KEEPALIVE_SECONDS="0.5",
                           STREAM_ALLOWED_ORIGINS=CONSOLE_ORIGIN) as s:
            yield s


@pytest.fixture
def acme(db):
    return Tenant.objects.create(slug="acme", name="Acme")


@pytest.fixture
def globex(db):
    return Tenant.objects.create(slug="globex", name="Globex")


def _append(tenant: Tenant, n: int, type_: str = "alert.updated") -> list[int]:
    return [services.append(tenant.pk, type_, 1000 + i, {"n": i}) for i in range(n)]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_last_event_id_replays_exactly_the_missed_ids_then_goes_live(server, acme, make_token):
    ids = _append(acme, 10)
    client = SSEClient(server.url, headers={**_bearer(make_token(acme, "alerts:read")), "Last-Event-ID": str(ids[3])})
    try:
        assert client.response.status_code == 200
        assert client.response.headers["Content-Type"].startswith("text/event-stream")
        assert client.response.headers["Cache-Control"] == "no-cache"
        assert client.response.headers["X-Accel-Buffering"] == "no"
        client.wait(lambda c: len(c.events) >= 6, what="the 6 missed events")
        assert client.ids() == ids[4:] == list(range(ids[4], ids[9] + 1))  # exactly the missed, contiguous
        first = client.events[0]
        assert first.type == "alert.updated"
        assert json.loads(first.data) | {"at": None} == {"id": ids[4], "type": "alert.updated", "tenant_id": acme.pk,
                                                          "alert_id": 1004, "at": None, "n": 4}
        live = _append(acme, 3, "alert.created")
        client.wait(lambda c: len(c.events) >= 9, what="3 live events")
        assert client.ids() == ids[4:] + live == list(range(ids[4], live[-1] + 1))
        assert [e.type for e in client.events[-3:]] == ["alert.created"] * 3
    finally:
        client.close()


def test_last_event_id_also_as_a_query_parameter(server, acme, make_token):
    ids = _append(acme, 3)
    client = SSEClient(server.url, headers=_bearer(make_token(acme, "alerts:read")),
                       params={"last_event_id": ids[0]})
    try:
        client.wait(lambda c: len(c.events) >= 2, what="2 missed events")
        assert client.ids() == ids[1:]
    finally:
        client.close()


def test_another_tenants_events_never_appear(server, acme, globex, make_token):
    mixed = []
    for _ in range(4):  # interleaved in id order
        mixed += [("acme", _append(acme, 1)[0]), ("globex", _append(globex, 1)[0])]
    start = mixed[0][1] - 1
    acme_client = SSEClient(server.url, headers={**_bearer(make_token(acme, "alerts:read")), "Last-Event-ID": str(start)})
    platform = SSEClient(server.url, headers={**_bearer(make_token(None, "alerts:read")), "Last-Event-ID": str(start)},
                         params={"tenant": "globex"})
    try:
        live = [("globex", i) for i in _append(globex, 2)] + [("acme", i) for i in _append(acme, 2)]
        everything = mixed + live
        acme_ids = [i for t, i in everything if t == "acme"]
        globex_ids = [i for t, i in everything if t == "globex"]
        acme_client.wait(lambda c: len(c.events) >= len(acme_ids), what="acme's events")
        platform.wait(lambda c: len(c.events) >= len(globex_ids), what="globex's events")
        time.sleep(0.5)  # anything else that was coming has come
        acme_client.wait(lambda c: True)
        assert sorted(acme_client.ids()) == acme_ids
        assert sorted(platform.ids()) == globex_ids
        assert {json.loads(e.data)["tenant_id"] for e in acme_client.events} == {acme.pk}
    finally:
        acme_client.close()
        platform.close()


def test_keep_alive_comments_are_sent_while_idle(server, acme, make_token):
    client = SSEClient(server.url, headers=_bearer(make_token(acme, "alerts:read")))
    try:
        client.wait(lambda c: "keep-alive" in c.comments, timeout=5, what="a keep-alive comment")
        assert client.events == []
    finally:
        client.close()


def test_refusals_name_what_is_wrong(server, acme, globex, make_token):
    def get(**kwargs):
        return requests.get(server.url, timeout=5, **kwargs)

    r = get()
    assert r.status_code == 401 and r.json()["error"]["code"] == "not_authenticated"
    r = get(headers=_bearer("ac_nope_nope"))
    assert r.status_code == 401 and "invalid" in r.json()["error"]["message"]
    r = get(headers=_bearer(make_token(acme, "logs:write")))
    assert r.status_code == 403 and "alerts:read" in r.json()["error"]["message"]
    r = get(headers=_bearer(make_token(acme, "alerts:read")), params={"tenant": "globex"})
    assert r.status_code == 403 and "own tenant (acme)" in r.json()["error"]["message"]
    r = get(headers={**_bearer(make_token(acme, "alerts:read")), "Last-Event-ID": "12abc"})
    assert r.status_code == 400 and "Last-Event-ID" in r.json()["error"]["message"]
    r = get(headers=_bearer(make_token(None, "alerts:read")), params={"tenant": "nosuch"})
    assert r.status_code == 404
    r = requests.post(server.url, timeout=5, headers=_bearer(make_token(acme, "alerts:read")))
    assert r.status_code == 405


def _session_cookie(user: User) -> dict[str, str]:
    client = Client()
    client.force_login(user)
    return {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value}


def test_console_session_sees_its_tenants_only_and_cors_admits_the_console_origin(server, acme, globex):
    member = User.objects.create_user("mia", password="x" * 12)
    TenantMembership.objects.create(user=member, tenant=globex, role=TenantMembership.Role.VIEWER)
    start = _append(acme, 1)[0] - 1
    client = SSEClient(server.url, headers={"Origin": CONSOLE_ORIGIN, "Last-Event-ID": str(start)},
                       params=None)
    assert client.response.status_code == 401  # no cookie, no token
    client = SSEClient(server.url, headers={"Origin": CONSOLE_ORIGIN, "Last-Event-ID": str(start),
                                            "Cookie": "; ".join(f"{k}={v}" for k, v in _session_cookie(member).items())})
    try:
        assert client.response.status_code == 200
        assert client.response.headers["Access-Control-Allow-Origin"] == CONSOLE_ORIGIN
        assert client.response.headers["Access-Control-Allow-Credentials"] == "true"
        mine = _append(globex, 1) + _append(acme, 1) + _append(globex, 1)
        client.wait(lambda c: len(c.events) >= 2, what="globex's two events")
        time.sleep(0.3)
        client.wait(lambda c: True)
        assert client.ids() == [mine[0], mine[2]]
    finally:
        client.close()
    r = requests.options(server.url, timeout=5, headers={"Origin": "http://evil.test",
                                                         "Access-Control-Request-Headers": "last-event-id"})
    assert r.status_code == 204 and "Access-Control-Allow-Origin" not in r.headers
    r = requests.options(server.url, timeout=5, headers={"Origin": CONSOLE_ORIGIN})
    assert r.headers["Access-Control-Allow-Origin"] == CONSOLE_ORIGIN
    assert "Last-Event-ID" in r.headers["Access-Control-Allow-Headers"]


def test_without_redis_the_stream_polls_the_table(acme, make_token, tmp_path):
    with stream_server(tmp_path, REDIS_URL="", STREAM_POLL_SECONDS="0.2") as nored:
        client = SSEClient(nored.url, headers=_bearer(make_token(acme, "alerts:read")))
        try:
            time.sleep(0.5)  # the hub has read the head
            t0 = time.monotonic()
            ids = _append(acme, 2)
            client.wait(lambda c: len(c.events) >= 2, timeout=5, what="events found by polling")
            assert client.ids() == ids
            assert time.monotonic() - t0 < 2.0
        finally:
            client.close()


def test_the_sync_web_workers_refuse_the_stream(acme, make_token):
    r = Client().get("/api/v1/stream", HTTP_AUTHORIZATION=f"Bearer {make_token(acme, 'alerts:read')}")
    assert r.status_code == 503
    assert "stream process" in r.json()["error"]["message"]
