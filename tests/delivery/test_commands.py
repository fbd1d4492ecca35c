"""The cron commands, called as cron would, and the webhook simulator as a process."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import timedelta
from io import StringIO
from ipaddress import ip_network

import pytest
import requests
from django.core.management import call_command
from django.utils import timezone

from apps.alerts.models import Alert
from apps.delivery.models import Delivery, WebhookEndpoint
from apps.delivery.services import create_endpoint
from apps.delivery.signing import new_secret, sign
from tests.delivery.peers import Hook, fire_alert
from tests.support.processes import BASE_DIR, child_env, free_port, stop_process, wait_for

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def loopback(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = [ip_network("127.0.0.0/8")]


def run(name, *args):
    out = StringIO()
    call_command(name, *args, stdout=out)
    return out.getvalue()


def test_retry_deliveries(tenant):
    with Hook() as hook:
        create_endpoint(tenant=tenant, url=hook.url, event_types=["alert.triggered"])
        fire_alert(tenant)
    Delivery.objects.update(state="FAILED", next_attempt_at=None, finished_at=timezone.now())
    assert "would retry 1 deliveries" in run("retry_deliveries", "--dry-run")
    assert Delivery.objects.get().state == "FAILED"
    assert "retried 1 deliveries" in run("retry_deliveries", "--since", "1h", "--tenant", "acme")
    d = Delivery.objects.get()
    assert d.state == "PENDING" and d.next_attempt_at <= timezone.now()
    assert "retried 0 deliveries" in run("retry_deliveries")  # idempotent


def test_reconcile_alerts_fixes_stuck_states_and_missing(tenant, settings):
    settings.DELIVERY_CLAIM_LEASE_SECONDS = 1
    with Hook() as hook:
        ep, _ = create_endpoint(tenant=tenant, url=hook.url, event_types=["alert.triggered"])
        alert = fire_alert(tenant)
        d = Delivery.objects.get()
        Delivery.objects.filter(pk=d.pk).update(state="SENDING", claimed_at=timezone.now() - timedelta(minutes=5))
        Alert.objects.filter(pk=alert.pk).update(delivery_state="DELIVERED")  # disagrees with the rows
        # An endpoint that was subscribed when this alert fired but has no delivery for it.
        ep2, _ = create_endpoint(tenant=tenant, url=hook.url + "2", event_types=["alert.triggered"])
        WebhookEndpoint.objects.filter(pk=ep2.pk).update(created_at=alert.created_at - timedelta(minutes=1))
    out = run("reconcile_alerts")
    assert "released 1 stuck" in out and "fixed 1 alert" in out and "created 1 missing" in out, out
    assert Delivery.objects.get(pk=d.pk).state == "PENDING"
    assert Alert.objects.get(pk=alert.pk).delivery_state == "PENDING"
    out = run("reconcile_alerts")
    assert "released 0" in out and "fixed 0" in out and "created 0" in out  # idempotent


def test_reconcile_reads_deliveries_per_thousand_alerts_not_per_alert(tenant, monkeypatch):
    """After a storm, reconcile_alerts (every few minutes from cron) reads the last 24 h of alerts:
    its statements must not grow with them. One alert among them lacking a delivery for an endpoint
    subscribed when it fired still gets it, once."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from apps.alerts import reconcile

    monkeypatch.setattr(reconcile, "CHUNK", 10)  # several chunks with few alerts

    def statements() -> tuple[str, int]:
        with CaptureQueriesContext(connection) as queries:
            out = run("reconcile_alerts")
        return out, len(queries.captured_queries)

    with Hook() as hook:
        create_endpoint(tenant=tenant, url=hook.url, event_types=["alert.triggered"])
        for _ in range(5):
            fire_alert(tenant)
        out, few = statements()
        assert "created 0 missing" in out
        alerts = [fire_alert(tenant) for _ in range(45)]
        out, many = statements()
        assert "created 0 missing" in out
        assert many - few <= 4  # 50 alerts in 5 chunks against 1: a read of deliveries per chunk

        late, _ = create_endpoint(tenant=tenant, url=hook.url + "late", event_types=["alert.triggered"])
        WebhookEndpoint.objects.filter(pk=late.pk).update(created_at=alerts[30].created_at)
        assert "created 15 missing" in run("reconcile_alerts")  # the last 15 fired after it was made
        assert sorted(Delivery.objects.filter(endpoint=late).values_list("alert_id", flat=True)) == sorted(
            a.pk for a in alerts[30:])
        assert "created 0 missing" in run("reconcile_alerts")


def test_check_webhooks(tenant):
    with Hook() as ok, Hook(lambda n, p, b: (500, {})) as bad:
        create_endpoint(tenant=tenant, url=ok.url)
        assert "1 ok, 0 failed" in run("check_webhooks", "--tenant", "acme")
        create_endpoint(tenant=tenant, url=bad.url)
        with pytest.raises(SystemExit) as exc:
            run("check_webhooks")
    assert exc.value.code == 1


def test_check_webhooks_reports_an_endpoint_it_cannot_sign_for_and_tests_the_others(tenant):
    """A secret that no configured key decrypts (a database restored under other keys) is that
    endpoint's failed line, named; the others are still tested and the run exits 1."""
    with Hook() as hook:
        first, _ = create_endpoint(tenant=tenant, url=hook.url + "/first")
        broken, _ = create_endpoint(tenant=tenant, url=hook.url + "/broken")
        last, _ = create_endpoint(tenant=tenant, url=hook.url + "/last")
        WebhookEndpoint.objects.filter(pk=broken.pk).update(secret_encrypted="not-a-fernet-token")
        out = StringIO()
        with pytest.raises(SystemExit) as exc:
            call_command("check_webhooks", stdout=out)
        assert sorted(r["path"].rsplit("/", 1)[1] for r in hook.requests) == ["first", "last"]
    assert exc.value.code == 1
    lines = out.getvalue().splitlines()
    assert f"#{first.pk} " in lines[0] and lines[0].endswith(" ok")
    assert f"#{broken.pk} " in lines[1] and "FAILED: cannot sign: cannot decrypt secret" in lines[1]
    assert f"#{last.pk} " in lines[2] and lines[2].endswith(" ok")
    assert lines[3] == "check_webhooks: 2 ok, 1 failed"


def test_check_webhooks_tests_endpoints_together_a_few_per_host_at_a_time(tenant, settings):
    """A silent receiver holds its own test, not the whole run: the tests run together, at most
    DELIVERY_CONCURRENCY_PER_DESTINATION at once to one host. Each answer waits until it has that
    many requests in flight: sent one after the other, the first would wait out its timeout."""
    settings.DELIVERY_CONCURRENCY_PER_DESTINATION = 3
    state = {"in_flight": 0, "most": 0}
    lock, together = threading.Lock(), threading.Barrier(3, timeout=5)

    def answer(n, path, body):
        with lock:
            state["in_flight"] += 1
            state["most"] = max(state["most"], state["in_flight"])
        try:
            together.wait()
            return 200, {}
        except threading.BrokenBarrierError:
            return 503, {}
        finally:
            with lock:
                state["in_flight"] -= 1

    with Hook(answer) as hook:
        for i in range(6):  # one host (127.0.0.1) for all six
            create_endpoint(tenant=tenant, url=f"{hook.url}/{i}")
        out = run("check_webhooks")
    assert "6 ok, 0 failed" in out
    assert state["most"] == 3  # together, and never more than the host's bound
    assert [line.split()[2] for line in out.splitlines()[:-1]] == [f"{hook.url}/{i}" for i in range(6)]  # in id order


def test_webhook_simulator_verifies_dedupes_and_injects(tmp_path):
    port = free_port()
    secret = new_secret()
    proc = subprocess.Popen([sys.executable, "manage.py", "webhook_simulator", "--port", str(port), "--secret", secret],
                            cwd=BASE_DIR, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/acme"
        body = b'{"type":"webhook.test"}'
        headers = sign(body=body, msg_id="msg_1", timestamp=int(time.time()), secrets=[secret])
        r = wait_for(lambda: requests.post(url, data=body, headers=headers, timeout=2), timeout=30, what="simulator up")
        assert r.status_code == 200 and r.json() == {"ok": True, "duplicate": False, "signature": "ok"}
        assert requests.post(url, data=body, headers=headers, timeout=2).json()["duplicate"] is True
        bad = sign(body=body, msg_id="msg_2", timestamp=int(time.time()), secrets=[new_secret()])
        assert requests.post(url, data=body, headers=bad, timeout=2).status_code == 401
    finally:
        stop_process(proc)
    out = proc.stdout.read()
    assert "id=msg_1 sig=ok dup=no -> 200" in out and "sig=BAD" in out
    assert "3 requests, 1 unique deliveries, 1 duplicates, 1 bad signatures" in out
