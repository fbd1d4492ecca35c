"""The per-tenant plugin limit: plugins are registered by intake, with their batch, up to the limit."""
from __future__ import annotations

import threading

import orjson
import pytest
from django.db import connections

from apps.ingest.models import IngestBatch
from apps.ingest.services import Writer, accept_events
from apps.tenants.models import Plugin, PluginCount

from .conftest import URL, event


def _post(client, events):
    resp = client.post(URL, data=orjson.dumps(events), content_type="application/json")
    assert resp.status_code == 202, resp.content
    return resp.json()


@pytest.mark.django_db
def test_new_plugins_past_the_limit_are_rejected_per_event_known_ones_accepted(writer_client, plugin, settings,
                                                                              no_doorbell):
    settings.TENANT_MAX_PLUGINS = 3  # "checkout" exists: room for two more
    plugins = ["checkout", "a", "b", "c", "checkout", "a", "d"]
    body = _post(writer_client, [event(plugin_id=p) for p in plugins])

    assert body["accepted"] == 5
    assert [r["index"] for r in body["rejected"]] == [3, 6]
    assert body["rejected"][0]["error"] == (
        "plugin_id: tenant 'acme' has reached its limit of 3 plugins (TENANT_MAX_PLUGINS); new plugin 'c' "
        "refused (events of its known plugins are accepted; remove unused plugins or raise the limit)")
    assert "new plugin 'd' refused" in body["rejected"][1]["error"]
    assert sorted(Plugin.objects.filter(tenant=plugin.tenant).values_list("slug", flat=True)) == ["a", "b", "checkout"]
    batch = IngestBatch.objects.get(pk=body["batch_id"])
    assert (batch.event_count, batch.rejected_count) == (5, 2)

    # The next request: the known plugins still pass, every new one is refused.
    again = _post(writer_client, [event(plugin_id="b"), event(plugin_id="e")])
    assert again["accepted"] == 1 and [r["index"] for r in again["rejected"]] == [1]


@pytest.mark.django_db
def test_a_body_of_only_refused_plugins_gets_the_all_rejected_answer(writer_client, plugin, settings, no_doorbell):
    settings.TENANT_MAX_PLUGINS = 1
    body = _post(writer_client, [event(plugin_id=f"new-{i}", level="FATAL") for i in range(3)])
    assert body["accepted"] == 0 and body["batch_id"] is None
    assert [r["index"] for r in body["rejected"]] == [0, 1, 2]
    assert all("limit of 1 plugins (TENANT_MAX_PLUGINS)" in r["error"] for r in body["rejected"])
    assert not IngestBatch.objects.exists() and no_doorbell == []
    assert Plugin.objects.count() == 1


@pytest.mark.django_db
def test_the_tenant_field_overrides_the_setting(writer_client, tenant, settings, no_doorbell):
    settings.TENANT_MAX_PLUGINS = 1
    tenant.max_plugins = 4
    tenant.save(update_fields=["max_plugins"])
    body = _post(writer_client, [event(plugin_id=f"p{i}") for i in range(6)])
    assert body["accepted"] == 4
    assert "limit of 4 plugins (max_plugins of the tenant)" in body["rejected"][0]["error"]
    assert Plugin.objects.filter(tenant=tenant).count() == 4


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_never_register_more_than_the_limit(tenant, settings, no_doorbell):
    settings.TENANT_MAX_PLUGINS = 30
    accepted: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def send(n: int) -> None:
        try:
            start.wait()
            result = accept_events(items=[event(plugin_id=f"w{n}-{i}") for i in range(20)],
                                   writer=Writer(token_id=None, tenant_slug="acme"))
            accepted.append(result.accepted)
        except BaseException as exc:  # reported below: a thread's failure must fail the test
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert Plugin.objects.filter(tenant=tenant).count() == 30
    assert PluginCount.objects.get(tenant=tenant).n == 30  # the count the next request reads
    assert sum(accepted) == 30  # one event per plugin: exactly the admitted ones
