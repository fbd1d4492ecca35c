"""A worker SIGKILLed in the middle of a send loses nothing: after the claim lease the sweeper
takes the row back and another worker sends it, with the same webhook-id."""
from __future__ import annotations

import os
import signal
import threading
import time
from ipaddress import ip_network

import pytest
from django.test import override_settings

from apps.delivery.models import Delivery
from apps.delivery.services import create_endpoint
from tests.delivery.peers import Hook, fire_alert
from tests.delivery.worker_support import sweeper, worker_env
from tests.support.processes import celery_worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def test_sigkill_mid_send_loses_no_delivery(clean_redis, tenant, tmp_path):
    first_arrived = threading.Event()

    def script(n, path, body):
        if n == 1:
            first_arrived.set()
            time.sleep(4)  # the first worker is killed while waiting for this answer
        return 200, {}

    env = worker_env(None, None)
    with Hook(script) as hook, override_settings(WEBHOOK_ALLOWED_NETWORKS=[ip_network("127.0.0.0/8")],
                                                 DELIVERY_CLAIM_LEASE_SECONDS=3):
        create_endpoint(tenant=tenant, url=hook.url, event_types=["alert.triggered"])
        with celery_worker(name="victim", env=env, log_path=tmp_path / "victim.log") as victim:
            fire_alert(tenant)
            assert first_arrived.wait(60), "the first attempt never reached the receiver"
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait(10)
        d = Delivery.objects.get()
        assert d.state == "SENDING" and d.attempts == 0  # claimed, never finished
        with celery_worker(name="rescuer", env=env, log_path=tmp_path / "rescuer.log"), sweeper():
            d = wait_for(lambda: Delivery.objects.filter(state="DELIVERED").first(), timeout=60,
                         what="the sweeper finishing the delivery")
    ids = [r["headers"]["webhook-id"] for r in hook.requests]
    assert len(ids) >= 2 and set(ids) == {d.msg_id}  # same webhook-id: the receiver can dedupe
    assert d.attempts == 1 and d.attempt_log.count() == 1
