"""A hostile-input corpus for POST /api/v1/logs and for rule patterns: never a 5xx, every refusal
is the error body, and whatever is accepted is then processed (no poison batch)."""
from __future__ import annotations

import time

import orjson
import pytest

from apps.ingest import tenancy
from apps.ingest.models import BatchStatus, IngestBatch
from apps.ingest.processing import process_batch

pytestmark = [pytest.mark.django_db]
URL = "/api/v1/logs"
NOW = "2030-01-01T00:00:00Z"


def ev(**kw) -> dict:
    base = {"level": "ERROR", "message": "boom", "tenant_id": "acme", "plugin_id": "checkout"}
    base.update(kw)
    return base


def deep(n: int):
    v: object = "x"
    for _ in range(n):
        v = [v]
    return v


CORPUS = {
    "truncated ndjson": (b'{"level":"ERROR","message":"a","tenant_id":"acme"}\n{"level":"ERR', "application/x-ndjson"),
    "truncated json": (b'[{"level":"ERROR","message":"a"', "application/json"),
    "wrong types": (orjson.dumps([ev(level=5), ev(message=["a"]), ev(ts={}), ev(tenant_id=7), ev(plugin_id=None),
                                  1, "str", None, [], True]), "application/json"),
    "top-level scalar": (b"42", "application/json"),
    "events not a list": (b'{"events": {"a": 1}}', "application/json"),
    "huge string": (orjson.dumps([ev(message="x" * 2_000_000)]), "application/json"),
    "huge key count": (orjson.dumps([{**ev(), **{f"k{i}": i for i in range(20_000)}}]), "application/json"),
    "deep nesting": (b'[{"level":"ERROR","message":"a","fields":' + b"[" * 5000 + b"]" * 5000 + b"}]",
                     "application/json"),
    "deep nesting in limits": (orjson.dumps([ev(extra=deep(200))]), "application/json"),
    "invalid utf-8": (b'[{"level":"ERROR","message":"\xff\xfe\xc3\x28"}]', "application/json"),
    "invalid utf-8 ndjson": (b'{"level":"ERROR","message":"ok"}\n\xff\xfe\n', "application/x-ndjson"),
    "duplicate keys": (b'[{"level":"ERROR","level":"INFO","message":"a","message":"b","tenant_id":"acme"}]',
                       "application/json"),
    "nul bytes": (orjson.dumps([ev(message="a\x00b", trace_id="t\x00", extra_key="v\x00", **{"k\x00": "v"})]),
                  "application/json"),
    "nul bytes ndjson raw": (b'{"level":"ERROR","message":"a\\u0000b"}\n\x00\n', "application/x-ndjson"),
    "empty body": (b"", "application/json"),
    "whitespace ndjson": (b"\n\n  \n", "application/x-ndjson"),
    "wrong content type": (orjson.dumps([ev()]), "text/plain"),
    "bom": (b"\xef\xbb\xbf" + orjson.dumps([ev()]), "application/json"),
    "timestamps": (orjson.dumps([ev(ts=t) for t in ["", "nope", -1, 1e30, "9999-99-99", 10**18, "2030-13-01T00:00:00Z",
                                                    float("nan") if False else "NaN", True]]), "application/json"),
    "control chars": (orjson.dumps([ev(message="".join(chr(i) for i in range(1, 32)))]), "application/json"),
    "surrogates escaped": (b'[{"level":"ERROR","message":"\\ud800\\udc00 \\ud800"}]', "application/json"),
}


@pytest.fixture
def writer(api, make_token, tenant, no_doorbell):
    tenancy.clear_caches()
    return api(make_token(tenant, "logs:write"))


@pytest.fixture
def no_doorbell(monkeypatch):
    monkeypatch.setattr("apps.ingest.tasks.detect_batch.delay", lambda batch_id: None)


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_hostile_body_is_refused_cleanly_or_processed(writer, name):
    body, ctype = CORPUS[name]
    resp = writer.generic("POST", URL, body, content_type=ctype)
    assert resp.status_code in (202, 413, 415, 422), (name, resp.status_code, resp.content[:300])
    if resp.status_code != 202:
        assert set(resp.json()["error"]) == {"code", "message", "details"}
        return
    batch_id = resp.json()["batch_id"]
    if batch_id is not None:
        process_batch(batch_id=batch_id)  # what the worker does: must not fail on what ingest accepted
        assert IngestBatch.objects.get(pk=batch_id).status == BatchStatus.DONE


def test_a_10_mb_line_is_413(writer):
    line = orjson.dumps(ev(message="y" * (10 * 1024 * 1024))) + b"\n"
    resp = writer.generic("POST", URL, line, content_type="application/x-ndjson")
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "too_large"


# --------------------------------------------------------------------------- hostile rules


def rule(**match) -> dict:
    return {"id": "hostile", "name": "Hostile", "category": "security",
            "match": {"levels": [], "keywords": [], "patterns": [], **match},
            "threshold": {"count": 1, "window": "1m"}, "group_by": ["tenant_id"], "severity": "warning",
            "cooldown": "1m", "recommended_action": "none"}


@pytest.fixture
def rules_api(api, make_token):
    return api(make_token(None, "rules:read,rules:write"))


@pytest.mark.parametrize("pattern", ["(a)\\1", "(?=a)b", "(?<=a)b", "a{1,100000}{1,100000}", "(" * 2000])
def test_patterns_the_linear_engine_cannot_run_are_refused(rules_api, pattern):
    resp = rules_api.post("/api/v1/rules", rule(patterns=[pattern]), format="json")
    assert resp.status_code in (400, 422), resp.content[:300]
    assert "patterns" in resp.json()["error"]["message"]


@pytest.mark.parametrize("pattern", ["(a+)+b", "(a|a)*c", "(a*)*$", "(x+x+)+y"])
def test_catastrophic_backtracking_patterns_run_in_linear_time(rules_api, pattern):
    from apps.rules.matcher import CompiledRuleSet
    from apps.rules.spec import parse_rule

    resp = rules_api.post("/api/v1/rules", rule(patterns=[pattern]), format="json")
    assert resp.status_code == 201, resp.content[:300]
    from apps.ingest.normalize import normalize_event
    from datetime import datetime, timedelta, timezone

    compiled = CompiledRuleSet.build([parse_rule(rule(patterns=[pattern]))])
    now = datetime.now(timezone.utc)
    evil = normalize_event(ev(message="a" * 100_000 + "!", level="INFO", ts=now.isoformat()), now=now,
                           max_past=timedelta(days=1), max_future=timedelta(minutes=5), default_tenant="acme")
    t0 = time.perf_counter()
    compiled.match(evil)
    assert time.perf_counter() - t0 < 0.5  # a backtracking engine would take years on this input


def test_an_enormous_keyword_list_is_refused_naming_the_limit(rules_api):
    resp = rules_api.post("/api/v1/rules", rule(keywords=[f"kw{i}" for i in range(50_000)]), format="json")
    assert resp.status_code in (400, 422)
    assert "at most 1000" in resp.json()["error"]["message"] and "keywords" in resp.json()["error"]["message"]
