"""apps/stream/services.py: rows in the caller's transaction, a Redis publish only on commit."""
from __future__ import annotations

import time

import pytest
import redis as redis_lib
from django.conf import settings
from django.db import transaction

from apps.stream import services
from apps.stream.models import StreamEvent

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def channel():
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(settings.STREAM_REDIS_CHANNEL)
    pubsub.get_message(timeout=1.0)  # the subscribe confirmation

    def messages(wait: float = 1.0) -> list[str]:
        got, deadline = [], time.monotonic() + wait
        while time.monotonic() < deadline:
            m = pubsub.get_message(timeout=0.1)
            if m and m["type"] == "message":
                got.append(m["data"].decode())
        return got

    yield messages
    pubsub.close()


def test_append_many_writes_in_the_transaction_and_publishes_the_ids_on_commit(tenant, channel):
    with transaction.atomic():
        ids = services.append_many([(tenant.pk, "alert.created", 7, {"title": "a"}),
                                    (tenant.pk, "delivery.updated", None, {"state": "DELIVERED"})])
        assert channel(wait=0.3) == []  # nothing before commit
    assert ids[1] == ids[0] + 1
    assert channel() == [f"{ids[0]},{ids[1]}"]
    stored = list(StreamEvent.objects.order_by("id").values_list("id", "tenant_id", "type", "alert_id", "data"))
    assert stored == [(ids[0], tenant.pk, "alert.created", 7, {"title": "a"}),
                      (ids[1], tenant.pk, "delivery.updated", None, {"state": "DELIVERED"})]


def test_a_rolled_back_transaction_leaves_no_event_and_publishes_nothing(tenant, channel):
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with transaction.atomic():
            services.append(tenant.pk, "alert.updated", 1, {})
            raise Boom
    assert StreamEvent.objects.count() == 0
    assert channel() == []


def test_an_unknown_type_is_refused_before_anything_is_written(tenant):
    with pytest.raises(ValueError, match="unknown stream event type.*alert.exploded"):
        services.append_many([(tenant.pk, "alert.created", 1, {}), (tenant.pk, "alert.exploded", 1, {})])
    assert StreamEvent.objects.count() == 0


def test_a_lost_publish_never_fails_the_change(tenant, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    event_id = services.append(tenant.pk, "alert.updated", 3, {})  # autocommit: on_commit runs at once
    assert StreamEvent.objects.filter(pk=event_id).exists()
    assert services.publish([event_id]) is False
