import time

import pytest

from apps.core.models import WorkerHeartbeat
from apps.core.tasks import heartbeat
from tests.support.processes import celery_worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def test_a_real_worker_process_executes_a_task(clean_redis, tmp_path):
    with celery_worker(name="hb", log_path=tmp_path / "worker.log") as proc:
        # The worker reports in once at start (worker_ready) ...
        wait_for(lambda: WorkerHeartbeat.objects.exists(), timeout=60, what="worker start-up heartbeat")
        WorkerHeartbeat.objects.all().delete()
        # ... and then a task sent through the Redis broker is executed by that process.
        heartbeat.delay()
        beat = wait_for(lambda: WorkerHeartbeat.objects.first(), timeout=30, what="heartbeat task executed")
        assert beat.hostname.startswith(f"hb-")
        assert proc.poll() is None


def test_the_embedded_broker_worker_takes_tasks_as_fast_as_they_finish(tmp_path):
    """On the embedded default (file-system broker) a worker whose pool was full slept kombu's
    1 s polling interval before taking the next message: ~2 tasks/s at concurrency 2, below the
    demo's own traffic, so detection fell minutes behind under ``make run``. 40 quick tasks now
    go through in about 1 s (10 s at kombu's default)."""
    from celery import Celery

    var = tmp_path / "var"
    # The folders settings.py gives the file-system broker under that var directory (runstack makes them).
    folders = {"data_folder_in": var / "broker", "data_folder_out": var / "broker",
               "processed_folder": var / "broker-processed", "control_folder": var / "broker-control"}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    env = {"CELERY_BROKER_URL": "filesystem://", "ALERTCENTER_VAR_DIR": str(var)}
    log_path = tmp_path / "worker.log"
    with celery_worker(name="fs", concurrency=2, env=env, log_path=log_path):
        def done() -> int:
            return log_path.read_text(errors="replace").count("Task core.heartbeat[")  # "... succeeded in"
        wait_for(lambda: WorkerHeartbeat.objects.exists(), timeout=60, what="worker start-up heartbeat")
        # Not the current app: the suite's later .delay() calls must still reach the Redis broker.
        sender = Celery(broker="filesystem://", set_as_current=False, broker_transport_options={
            **{key: str(path) for key, path in folders.items()}, "store_processed": False})
        with sender.connection_for_write() as connection:
            for _ in range(40):
                sender.send_task("core.heartbeat", queue="default", connection=connection)
        started = time.monotonic()
        wait_for(lambda: done() >= 40, timeout=60, interval=0.2, what="40 tasks executed")
        assert time.monotonic() - started < 5, f"{time.monotonic() - started:.1f} s for 40 tasks"
