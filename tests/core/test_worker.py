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
