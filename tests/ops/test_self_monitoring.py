"""Self-monitoring through the real alert pipeline: a receiver answering 500 to a real worker, 21
downgrades, and the watchdog when the worker is stopped."""
from __future__ import annotations

import time
from datetime import timedelta
from ipaddress import ip_network

import pytest
from django.test import override_settings

from apps.alerts.models import Alert
from apps.core import clock
from apps.delivery.models import DeliveryAttempt
from apps.delivery.services import create_endpoint
from apps.ops.self_monitoring import run_system_checks
from apps.tenants.models import FallbackContact, Tenant
from tests.delivery.peers import Hook, fire_alert, peer_env
from tests.support.processes import celery_worker, wait_for

from .factories import make_alert, make_batch, make_delivery

pytestmark = [pytest.mark.django_db(transaction=True)]


def system_alert(check: str) -> Alert | None:
    return Alert.objects.filter(rule_key=f"system.{check}").first()


@pytest.fixture
def platform(db):
    tenant = Tenant.objects.create(slug="platform", name="Alert Center platform", is_platform=True)
    FallbackContact.objects.create(tenant=tenant, kind="email", value="sre@platform.example")
    return tenant


@pytest.mark.integration
def test_failing_deliveries_raise_one_p1_on_the_platform(tenant, platform, clean_redis, settings, tmp_path):
    settings.SELF_MONITOR_MIN_ATTEMPTS = 5
    with Hook(lambda n, p, b: (500, {})) as failing, Hook() as platform_hook, \
            override_settings(WEBHOOK_ALLOWED_NETWORKS=[ip_network("127.0.0.0/8")]), \
            celery_worker(name="selfmon", queues="deliver", env=peer_env(), log_path=tmp_path / "worker.log"):
        create_endpoint(tenant=tenant, url=failing.url, event_types=["alert.triggered"])
        create_endpoint(tenant=platform, url=platform_hook.url, event_types=["alert.triggered"])
        for i in range(6):
            fire_alert(tenant, title=f"burst {i}")
        wait_for(lambda: DeliveryAttempt.objects.filter(number=1, success=False).count() == 6, timeout=60,
                 what=f"6 failed first attempts (see {tmp_path / 'worker.log'})")
        assert run_system_checks()["delivery_success"].startswith("alert #")
        p1 = system_alert("delivery-success-rate")
        assert p1.tenant == platform and p1.severity == "critical" and p1.state == "OPEN"
        assert "0%" in p1.title
        # Delivered to the platform's own endpoint by the same worker, like any alert.
        wait_for(lambda: platform_hook.requests, timeout=60, what="P1 delivered to the platform webhook")
        assert platform_hook.requests[0]["headers"]["x-powerx-alert-id"] == str(p1.pk)
    # The next minute's run absorbs into the same alert instead of raising another.
    run_system_checks()
    assert Alert.objects.filter(rule_key="system.delivery-success-rate").count() == 1
    assert Alert.objects.get(pk=p1.pk).count == 2


def test_enough_successes_raise_nothing(tenant, platform, settings):
    settings.SELF_MONITOR_MIN_ATTEMPTS = 5
    for ok in [True] * 19 + [False]:  # 95 %: not below the threshold
        make_delivery(make_alert(tenant), attempts=[ok])
    assert run_system_checks()["delivery_success"] == "ok"
    for _ in range(3):
        make_delivery(make_alert(tenant), attempts=[False])
    DeliveryAttempt.objects.filter(success=True).delete()  # 4 attempts, all failed: too few to judge
    assert run_system_checks()["delivery_success"] == "ok"
    assert not system_alert("delivery-success-rate")


def test_21_downgrades_in_a_day_raise_a_governance_alert(tenant, platform):
    now = clock.now()
    alert = make_alert(tenant)
    make_delivery(alert, downgraded_at=now - timedelta(hours=25))  # outside the day
    for _ in range(20):
        make_delivery(alert, downgraded_at=now - timedelta(hours=1))
    assert run_system_checks()["downgrades"] == "ok"
    make_delivery(alert, downgraded_at=now)
    assert run_system_checks()["downgrades"].startswith("alert #")
    governance = system_alert("downgrades-per-day")
    assert governance.severity == "warning" and governance.category == "governance"
    assert governance.tenant == platform and "21" in governance.title


def test_platform_tenant_created_when_missing(tenant):
    make_batch(tenant, accepted=1, status="PENDING", age=timedelta(minutes=10))
    run_system_checks()
    stuck = system_alert("pipeline-stuck")
    assert stuck.tenant.is_platform and stuck.tenant.slug == "platform" and stuck.severity == "emergency"


@pytest.mark.integration
def test_watchdog_fires_when_the_worker_stops(platform, tenant, clean_redis, settings, tmp_path):
    settings.WORKER_HEARTBEAT_MAX_AGE = 3
    with celery_worker(name="watchdog", queues="default", log_path=tmp_path / "worker.log"):
        wait_for(lambda: run_system_checks()["heartbeat"] == "ok", timeout=60,
                 what=f"worker heartbeat (see {tmp_path / 'worker.log'})")
    time.sleep(settings.WORKER_HEARTBEAT_MAX_AGE + 1)
    assert run_system_checks()["heartbeat"].startswith("alert #")
    watchdog = system_alert("worker-heartbeat")
    assert watchdog.severity == "emergency" and watchdog.tenant == platform and watchdog.state == "OPEN"
    assert watchdog.delivery_state in ("NONE", "PENDING")  # nobody can send it while workers are down


def test_watchdog_sees_overdue_deliveries(tenant, platform, settings):
    settings.WATCHDOG_DELIVERY_OVERDUE_SECONDS = 60
    make_delivery(make_alert(tenant), state="PENDING", next_attempt_at=clock.now() - timedelta(minutes=5))
    assert run_system_checks()["pipeline"].startswith("alert #")
    assert "1 deliveries due but not attempted" in system_alert("pipeline-stuck").title


def test_one_failing_check_does_not_stop_the_others(tenant, platform, monkeypatch):
    def broken(now):
        raise RuntimeError("boom")

    from apps.ops import self_monitoring

    make_batch(tenant, accepted=1, status="PENDING", age=timedelta(minutes=10))
    outcome = run_system_checks(checks=(broken, self_monitoring.check_pipeline))
    assert outcome["broken"].startswith("error: RuntimeError") and outcome["pipeline"].startswith("alert #")


def test_the_watchdog_checks_do_not_count_every_unfinished_delivery_per_tenant():
    """The per-tenant count of unfinished deliveries (a dead endpoint's whole backlog among them) is
    the scrape's gauge; the pipeline and heartbeat checks read only what they judge."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from apps.ops import self_monitoring

    with CaptureQueriesContext(connection) as queries:
        self_monitoring.check_pipeline(clock.now())
        self_monitoring.check_heartbeat(clock.now())
    grouped = [q["sql"] for q in queries.captured_queries if "GROUP BY" in q["sql"] and "delivery_delivery" in q["sql"]]
    assert grouped == []
    # batches, overdue deliveries (due, and parked past their expiry), newest heartbeat (in each check)
    assert len(queries.captured_queries) == 5


def test_the_watchdog_reads_deliveries_parked_past_their_expiry_from_an_index_of_those_rows():
    """A dead receiver's backlog can be hundreds of thousands of parked rows; the count of those
    left past their expiry, run at every check and scrape, reads a range of delivery_parked_expiry
    instead of filtering all of them (delivery_probe leads with the endpoint)."""
    import orjson
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from apps.ops import figures

    with CaptureQueriesContext(connection) as queries:
        figures.backlog(clock.now(), {}, per_tenant=False)
    (late,) = [q["sql"] for q in queries.captured_queries if "expires_at" in q["sql"]]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # an empty table: ask which index serves it
        cursor.execute(f"EXPLAIN (FORMAT JSON) {late}")
        plan = orjson.dumps(cursor.fetchone()[0]).decode()
    assert '"Index Name":"delivery_parked_expiry"' in plan and '"Filter"' not in plan, plan
