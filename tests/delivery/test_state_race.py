"""Two transactions finishing deliveries of one alert (to two endpoints) at the same time must
leave the alert DELIVERED, not PENDING: the state is computed under a lock on the alert row."""
from __future__ import annotations

import threading
from ipaddress import ip_network

import pytest
from django.db import connection, transaction

from apps.alerts.models import Alert
from apps.delivery import feedback
from apps.delivery.feedback import DeliveryReport
from apps.delivery.models import Delivery, DeliveryState
from apps.delivery.services import create_endpoint
from tests.delivery.peers import fire_alert

pytestmark = pytest.mark.django_db(transaction=True)


def test_concurrent_finishes_of_one_alert_end_delivered(settings, tenant):
    settings.WEBHOOK_ALLOWED_NETWORKS = [ip_network("127.0.0.0/8")]
    for n in (1, 2):
        create_endpoint(tenant=tenant, url=f"http://127.0.0.1:9/hook{n}")
    alert = fire_alert(tenant)
    deliveries = list(Delivery.objects.filter(alert=alert, channel="webhook").order_by("id"))
    assert len(deliveries) == 2
    both_updated = threading.Barrier(2, timeout=10)
    errors: list[BaseException] = []

    def finish(delivery: Delivery) -> None:
        try:
            with transaction.atomic():
                Delivery.objects.filter(pk=delivery.pk).update(state=DeliveryState.DELIVERED, attempts=1)
                delivery.state = DeliveryState.DELIVERED
                # Both rows are updated (neither committed) before either computes the alert state.
                both_updated.wait()
                feedback.report([DeliveryReport(delivery.alert_id, {"result": "delivered"})])
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=finish, args=(d,)) for d in deliveries]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert Alert.objects.get(pk=alert.pk).delivery_state == "DELIVERED"
