"""A real log shipper: Debian's syslog-ng posts NDJSON to /api/v1/logs with its http() destination.

The config written here is the README's recipe (only the URL, token and source port differ).
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time

import pytest

from apps.alerts.models import Alert
from apps.ingest.models import EventRecord, IngestBatch
from tests.support.processes import celery_worker, free_port, stop_process, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

SYSLOG_NG = shutil.which("syslog-ng") or next((p for p in ("/usr/sbin/syslog-ng",) if os.path.exists(p)), None)

CONFIG = """\
@version: {version}
options {{ keep-hostname(yes); }};

source s_apps {{
  network(ip("127.0.0.1") port({port}) transport("tcp"));
}};

destination d_alert_center {{
  http(
    url("{url}/api/v1/logs")
    method("POST")
    headers("Authorization: Bearer {token}", "Content-Type: application/x-ndjson")
    body("$(format-json MESSAGE=$MESSAGE ISODATE=$ISODATE PROGRAM=$PROGRAM HOST=$HOST PRIORITY=$LEVEL)")
    delimiter("\\n")
    batch-lines(500)
    batch-bytes(1048576)
    batch-timeout(500)
    timeout(10)
  );
}};

log {{ source(s_apps); destination(d_alert_center); }};
"""


def config_version() -> str:
    out = subprocess.run([SYSLOG_NG, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"Config version: (\d+\.\d+)", out)
    return m.group(1) if m else "3.35"


def syslog_line(pri: int, host: str, program: str, message: str) -> bytes:
    stamp = time.strftime("%b %d %H:%M:%S", time.localtime())
    return f"<{pri}>{stamp} {host} {program}[4242]: {message}\n".encode()


@pytest.mark.skipif(SYSLOG_NG is None, reason="syslog-ng binary not installed (apt-get install syslog-ng-core syslog-ng-mod-http)")
def test_syslog_ng_lines_arrive_as_events_and_fire_a_rule(live_server, make_token, tenant, default_rules,
                                                          clean_redis, tmp_path):
    port = free_port()
    conf = tmp_path / "syslog-ng.conf"
    conf.write_text(CONFIG.format(version=config_version(), port=port, url=live_server.url,
                                  token=make_token(tenant, "logs:write", name="syslog-ng")))
    log = open(tmp_path / "syslog-ng.log", "wb")
    proc = subprocess.Popen(
        [SYSLOG_NG, "--no-caps", "-F", "-e", "-f", str(conf), "-R", str(tmp_path / "persist"),
         "-c", str(tmp_path / "ctl"), "-p", str(tmp_path / "pid")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with celery_worker(name="syslog", queues="detect", log_path=tmp_path / "worker.log"):
            sock = wait_for(lambda: socket.create_connection(("127.0.0.1", port), timeout=1), timeout=30,
                            what=f"syslog-ng listening (see {tmp_path / 'syslog-ng.log'})")
            with sock:
                # <PRI> = facility user (8) + severity: 6 info, 4 warning, 3 err, 0 emerg.
                sock.sendall(syslog_line(14, "web-1", "checkout", "GET /cart 200 12ms")
                             + syslog_line(12, "web-1", "checkout", "slow query took 1900ms")
                             + syslog_line(11, "web-2", "auth-gateway",
                                           "permission denied for user=bob password=hunter2 on /admin"))
            wait_for(lambda: Alert.objects.filter(rule_key="security-keywords").exists(), timeout=60,
                     what=f"security alert (logs in {tmp_path})")
    finally:
        stop_process(proc)
        log.close()

    assert sum(IngestBatch.objects.values_list("event_count", flat=True)) == 3
    assert sum(IngestBatch.objects.values_list("rejected_count", flat=True)) == 0
    records = {r.message: r for r in EventRecord.objects.select_related("plugin")}
    assert set(records) == {"slow query took 1900ms",
                            "permission denied for user=bob password=[MASKED:password] on /admin"}
    denied = records["permission denied for user=bob password=[MASKED:password] on /admin"]
    assert (denied.level, denied.plugin.slug, denied.fields) == ("ERROR", "auth-gateway", {"host": "web-2"})
    assert "security-keywords" in denied.rule_keys
    alert = Alert.objects.get(rule_key="security-keywords")
    assert alert.tenant == tenant and alert.plugin.slug == "auth-gateway"
    assert "hunter2" not in str(alert.samples)
