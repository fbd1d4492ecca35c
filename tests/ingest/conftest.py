from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from apps.ingest.codec import decode_events
from apps.ingest.models import IngestBatch

URL = "/api/v1/logs"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def event(**overrides) -> dict:
    base = {"ts": now_iso(), "level": "INFO", "message": "request served", "tenant_id": "acme",
            "plugin_id": "checkout"}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def ndjson(events: list[dict]) -> bytes:
    return b"\n".join(orjson.dumps(e) for e in events) + b"\n"


def batch_events(batch_id: int):
    return decode_events(IngestBatch.objects.get(pk=batch_id).payload)


@pytest.fixture
def default_rules(db):
    """The default rule pack loaded, and the engine's compiled-rules cache fresh."""
    from django.conf import settings as dj_settings

    from apps.rules import engine
    from apps.rules.services import pack_import

    engine.reset_cache()
    text = (Path(dj_settings.BASE_DIR) / "fixtures" / "log_rules" / "default.yaml").read_text()
    pack_import(text=text, actor="test", source="pack:default")
    yield
    engine.reset_cache()


@pytest.fixture
def writer_client(api, make_token, tenant):
    """An API client with a logs:write token bound to tenant acme."""
    return api(make_token(tenant, "logs:write"))


@pytest.fixture
def platform_client(api, make_token, db):
    return api(make_token(None, "logs:write", name="platform"))


@pytest.fixture
def no_doorbell(monkeypatch):
    """Record detect_batch.delay calls instead of publishing (unit tests need no broker)."""
    calls: list[int] = []
    monkeypatch.setattr("apps.ingest.tasks.detect_batch.delay", lambda batch_id: calls.append(batch_id))
    return calls
