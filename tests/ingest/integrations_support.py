"""Bodies and helpers shared by the inbound integration tests."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson

from apps.ingest.processing import process_batch

AM_URL = "/api/v1/integrations/alertmanager"
GRAFANA_URL = "/api/v1/integrations/grafana"
EVENTS_URL = "/api/v1/events"
ZERO_TIME = "0001-01-01T00:00:00Z"


def iso(minutes_ago: float = 0) -> str:
    return (datetime.now(timezone.utc) - timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z")


def am_alert(fingerprint: str = "a1b2c3d4e5f60718", *, status: str = "firing", starts: str | None = None,
             ends: str = ZERO_TIME, **labels) -> dict:
    return {"status": status, "fingerprint": fingerprint, "startsAt": starts or iso(5), "endsAt": ends,
            "labels": {"alertname": "HighCPU", "severity": "critical", "job": "node", "instance": "db-1:9100",
                       **labels},
            "annotations": {"summary": "CPU above 90% on db-1", "description": "load 12 for 5 minutes",
                            "runbook_url": "https://runbooks.example/cpu"},
            "generatorURL": "http://prometheus:9090/graph?g0.expr=cpu"}


def am_body(*alerts: dict, status: str = "firing") -> bytes:
    return orjson.dumps({
        "version": "4", "groupKey": '{}:{alertname="HighCPU"}', "truncatedAlerts": 0, "status": status,
        "receiver": "alert-center", "groupLabels": {"alertname": "HighCPU"}, "commonLabels": {},
        "commonAnnotations": {}, "externalURL": "http://alertmanager:9093", "alerts": list(alerts)})


DEEP = "<deep>"


def nested(levels: int) -> dict:
    """{"a": {"a": ... {"a": 1}}} with ``levels`` objects."""
    value: object = 1
    for _ in range(levels):
        value = {"a": value}
    return value  # type: ignore[return-value]


def with_deep(body: bytes, levels: int) -> bytes:
    """``body`` with its string ``DEEP`` replaced by ``nested(levels)``: orjson writes at most 254 levels."""
    return body.replace(orjson.dumps(DEEP), b'{"a":' * levels + b"1" + b"}" * levels)


def post(client, url: str, body: bytes, content_type: str = "application/json", **extra):
    return client.generic("POST", url, body, content_type=content_type, **extra)


def accept_and_process(client, url: str, body: bytes, **extra) -> dict:
    """POST (must be 202), then run the detect worker's step in-process; returns the 202 body."""
    resp = post(client, url, body, **extra)
    assert resp.status_code == 202, resp.content
    data = resp.json()
    outcome = process_batch(batch_id=data["batch_id"])
    assert outcome is not None
    return data
