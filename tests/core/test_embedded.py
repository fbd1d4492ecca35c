"""`make run` starts the embedded stack (SQLite + file-system broker); it must come up healthy."""
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import requests
from django.conf import settings

from tests.support.processes import free_port, wait_for

pytestmark = pytest.mark.integration


def test_embedded_stack_serves_health_with_worker_heartbeat(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CACHE_URL")}
    env.update({"DEBUG": "1", "ALERTCENTER_VAR_DIR": str(tmp_path / "var"), "PYTHONUNBUFFERED": "1",
                "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"})
    log = open(tmp_path / "stack.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runstack", "--port", str(port), "--simulator-port", str(free_port()),
         "--stream-port", str(free_port()), "--web-workers", "1", "--worker-concurrency", "1"],
        cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        def healthy():
            resp = requests.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=5)
            return resp.status_code == 200 and resp.json()
        body = wait_for(healthy, timeout=120, interval=1, what="embedded /api/v1/health 200")
        assert body["checks"]["database"]["detail"] == "sqlite"
        assert body["checks"]["broker"]["detail"] == "filesystem"
        assert body["checks"]["worker"]["ok"] is True
        database = tmp_path / "var" / "alertcenter.sqlite3"
        assert database.exists()

        # The demo's traffic fires alerts whose webhooks reach the simulator: the whole pipeline
        # (ingest, detection, outbox, delivery) works on SQLite and the file-system broker too.
        def delivered():
            with sqlite3.connect(database, timeout=10) as db:
                return db.execute("SELECT count(*) FROM delivery_delivery WHERE state = 'DELIVERED'").fetchone()[0]
        wait_for(delivered, timeout=150, interval=2, what="a webhook delivered on the embedded stack")
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError("the stack did not stop within 30 s of Ctrl-C")
        log.close()
    output = (tmp_path / "stack.log").read_text(errors="replace")
    assert "demo login" in output and "stopped" in output, output[-3000:]
