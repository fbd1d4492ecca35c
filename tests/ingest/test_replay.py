"""manage.py replay_logs: the same validation, masking and batch path as the API."""
from __future__ import annotations

from io import StringIO

import orjson
import pytest
from django.core.management import CommandError, call_command

from apps.ingest.models import IngestBatch

from .conftest import batch_events, event, ndjson

pytestmark = pytest.mark.django_db


def replay(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("replay_logs", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_replays_a_file_in_batches_and_reports(tmp_path, tenant, other_tenant, no_doorbell):
    path = tmp_path / "logs.ndjson"
    lines = [event(message="one"), event(message="token=abc123secret"), event(level="nope"),
             event(message="four", tenant_id=None), event(message="five", tenant_id="globex")]
    path.write_bytes(ndjson(lines[:2]) + b"not json at all\n\n" + ndjson(lines[2:]))
    out, err = replay(str(path), "--tenant", "acme", "--batch-size", "2")
    assert out.strip() == f"replayed {path}: accepted 3, rejected 3, batches 2"
    assert "line 3: event: line 1: not valid JSON" in err
    assert "line 5: level: unknown level 'nope'" in err
    assert "line 7: tenant_id: token is bound to tenant 'acme', event names 'globex'" in err
    messages = [e.message for b in IngestBatch.objects.order_by("pk") for e in batch_events(b.pk)]
    assert messages == ["one", "token=[MASKED:password]", "four"]


def test_an_unknown_tenant_fails_the_run_before_any_line(tmp_path, tenant, no_doorbell):
    path = tmp_path / "logs.ndjson"
    path.write_bytes(ndjson([event(tenant_id=None)]))
    with pytest.raises(CommandError, match="no tenant 'nosuch'"):
        replay(str(path), "--tenant", "nosuch")
    assert not IngestBatch.objects.exists()


def test_platform_replay_needs_tenant_ids(tmp_path, tenant, no_doorbell):
    path = tmp_path / "logs.ndjson"
    path.write_bytes(ndjson([event(), event(tenant_id=None)]))
    out, err = replay(str(path))
    assert "accepted 1, rejected 1, batches 1" in out and "tenant_id: required" in err


def test_unreadable_file_fails(tmp_path):
    with pytest.raises(CommandError, match="cannot read"):
        replay(str(tmp_path / "missing.ndjson"))


def test_speed_paces_batches_by_event_time(tmp_path, tenant, no_doorbell, monkeypatch):
    from datetime import datetime, timedelta, timezone

    start = datetime.now(timezone.utc) - timedelta(seconds=30)
    path = tmp_path / "logs.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(event(ts=(start + timedelta(seconds=s)).isoformat()))
                                for s in (0, 10, 20)))
    slept: list[float] = []
    monkeypatch.setattr("apps.ingest.management.commands.replay_logs.time.sleep", slept.append)
    replay(str(path), "--batch-size", "1", "--speed", "10", "--tenant", "acme")
    # 10 s and 20 s of log time at 10x: about 1 s and 2 s after the first batch.
    assert len(slept) == 2 and 0.5 < slept[0] <= 1.0 and 1.5 < slept[1] <= 2.0
