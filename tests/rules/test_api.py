from __future__ import annotations

import json

import pytest
import yaml

from apps.audit.models import AuditEvent
from apps.rules import services
from apps.rules.models import LogRule, RuleOverride

from .conftest import rule_dict

pytestmark = pytest.mark.django_db


@pytest.fixture
def platform(make_token, api):
    return api(make_token(None, "rules:read,rules:write"))


@pytest.fixture
def acme(make_token, api, tenant):
    return api(make_token(tenant, "rules:read,rules:write"))


@pytest.fixture
def seeded(tenant, other_tenant):
    services.rule_create(raw=rule_dict(count=10, overrides=[{"tenant": "globex", "threshold": {"count": 99}}]),
                         actor="seed")
    return LogRule.objects.get()


def test_scopes_are_enforced(make_token, api, seeded):
    assert api().get("/api/v1/rules").status_code == 401
    no_rules = api(make_token(None, "alerts:read"))
    assert no_rules.get("/api/v1/rules").status_code == 403
    read_only = api(make_token(None, "rules:read"))
    assert read_only.get("/api/v1/rules").status_code == 200
    r = read_only.post("/api/v1/rules", rule_dict("new"), format="json")
    assert r.status_code == 403 and "rules:write" in r.json()["error"]["message"]
    assert read_only.post("/api/v1/rules/test", {"lines": "ERROR x"}, format="json").status_code == 200


def test_platform_crud_and_revisions(platform):
    r = platform.post("/api/v1/rules", rule_dict(), format="json")
    assert r.status_code == 201 and r.json()["version"] == 1 and r.json()["spec"]["threshold"]["window"] == "5m"
    r = platform.patch("/api/v1/rules/errors", {"severity": "warning"}, format="json")
    assert r.status_code == 200 and r.json()["version"] == 2 and r.json()["spec"]["severity"] == "warning"
    r = platform.put("/api/v1/rules/errors", rule_dict(count=7), format="json")
    assert r.json()["spec"]["threshold"]["count"] == 7 and r.json()["version"] == 3
    r = platform.delete("/api/v1/rules/errors")
    assert r.status_code == 200 and r.json()["enabled"] is False
    revs = platform.get("/api/v1/rules/errors/revisions").json()
    assert [(x["version"], x["change"]) for x in revs] == [(4, "disabled"), (3, "updated"), (2, "updated"),
                                                           (1, "created")]
    assert platform.get("/api/v1/rules/nope").status_code == 404
    assert platform.post("/api/v1/rules", rule_dict(), format="json").status_code == 409
    assert AuditEvent.objects.filter(action__startswith="rule.", actor_type="token").count() == 4


def test_invalid_rule_is_422_naming_fields(platform):
    bad = rule_dict(levels=["EROR"], window="5 minutes")
    r = platform.post("/api/v1/rules", bad, format="json")
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "invalid_rule"
    assert "rule 'errors': match.levels: unknown level 'EROR'" in err["details"]["errors"]
    assert any(e.startswith("rule 'errors': threshold.window: bad duration") for e in err["details"]["errors"])
    r = platform.patch("/api/v1/rules/nope", {"severity": "x"}, format="json")
    assert r.status_code == 404


def test_tenant_token_limits(acme, seeded):
    assert acme.post("/api/v1/rules", rule_dict("mine"), format="json").status_code == 403
    assert acme.patch("/api/v1/rules/errors", {"severity": "info"}, format="json").status_code == 403
    assert acme.delete("/api/v1/rules/errors").status_code == 403
    assert acme.post("/api/v1/rules/import", {"rules": []}, format="json").status_code == 403
    assert acme.get("/api/v1/rules/export").status_code == 403
    assert acme.get("/api/v1/rules/errors/revisions").status_code == 403
    # Reading shows the rule as acme sees it, without other tenants' overrides.
    rule = acme.get("/api/v1/rules/errors").json()
    assert "overrides" not in rule["spec"] and rule["override"] is None

    r = acme.put("/api/v1/rules/errors/overrides", {"threshold": {"count": 3}, "tenant": "globex"}, format="json")
    assert r.status_code == 200 and r.json() == {"tenant": "acme", "threshold": {"count": 3}}
    assert RuleOverride.objects.get().tenant.slug == "acme"  # never another tenant's
    listed = acme.get("/api/v1/rules").json()
    assert listed[0]["spec"]["threshold"]["count"] == 3 and listed[0]["override"] == {"threshold": {"count": 3}}
    r = acme.put("/api/v1/rules/errors/overrides", {"threshold": {"count": -1}}, format="json")
    assert r.status_code == 422
    assert r.json()["error"]["details"]["errors"] == [
        "rule 'errors': override.threshold.count: -1 out of range (must be 1..1000000)"]
    assert acme.delete("/api/v1/rules/errors/overrides").status_code == 204
    assert acme.get("/api/v1/rules/errors/overrides").status_code == 404


def test_platform_override_needs_tenant(platform, seeded):
    r = platform.put("/api/v1/rules/errors/overrides", {"severity": "info"}, format="json")
    assert r.status_code == 400
    r = platform.put("/api/v1/rules/errors/overrides?tenant=acme", {"severity": "info"}, format="json")
    assert r.status_code == 200
    assert platform.get("/api/v1/rules/errors/overrides?tenant=acme").json()["severity"] == "info"


def test_import_export_round_trip(platform, seeded):
    text = platform.get("/api/v1/rules/export?format=yaml").content.decode()
    doc = yaml.safe_load(text)
    assert doc["rules"][0]["overrides"] == [{"tenant": "globex", "threshold": {"count": 99}}]
    doc["rules"].append(rule_dict("second", keywords=["oops"], levels=()))
    r = platform.post("/api/v1/rules/import", yaml.safe_dump(doc), content_type="application/yaml")
    assert r.status_code == 200, r.content
    assert r.json() == {"created": ["second"], "updated": [], "unchanged": ["errors"], "disabled": []}
    as_json = platform.get("/api/v1/rules/export?format=json").content
    r = platform.post("/api/v1/rules/import", json.loads(as_json), format="json")
    assert r.json()["unchanged"] == ["errors", "second"]
    assert platform.get("/api/v1/rules/export?format=xml").status_code == 400


def test_import_is_all_or_nothing(platform):
    pack = {"rules": [rule_dict("good"), rule_dict("bad", severity="loud"), rule_dict("worse", levels=["NOPE"])]}
    r = platform.post("/api/v1/rules/import", pack, format="json")
    assert r.status_code == 422
    errors = r.json()["error"]["details"]["errors"]
    assert len(errors) == 2 and errors[0].startswith("rule 'bad': severity") and errors[1].startswith(
        "rule 'worse': match.levels")
    assert not LogRule.objects.exists()
    r = platform.post("/api/v1/rules/import", "rules: [", content_type="application/yaml")
    assert r.status_code == 422 and "not valid YAML" in r.json()["error"]["message"]


def test_dry_run_stored_and_unsaved_rules(acme, seeded):
    before = (LogRule.objects.get().version, AuditEvent.objects.count())
    lines = "\n".join(["ERROR db down"] * 3 + ["INFO fine", '{"level": "FATAL", "message": "x", "plugin_id": "p2"}',
                       "garbage"])
    r = acme.post("/api/v1/rules/test", {"key": "errors", "lines": lines}, format="json")
    assert r.status_code == 200
    body = r.json()
    assert [e["rules"] for e in body["events"]] == [["errors"]] * 3 + [[], ["errors"]]
    assert body["errors"] == [{"index": 5, "error": "line: expected '<LEVEL> <message>' or a JSON object"}]
    assert [(g["group_key"]["plugin_id"], g["matches"], g["would_fire"]) for g in body["groups"]] == [
        ("dry-run", 3, False), ("p2", 1, False)]

    rule = rule_dict("tmp", count=2)
    r = acme.post("/api/v1/rules/test", {"rule": rule, "events": [{"level": "ERROR", "message": "a"}] * 2},
                  format="json")
    group = r.json()["groups"][0]
    assert group["would_fire"] is True and group["fires_at_index"] == 1
    assert (LogRule.objects.get().version, AuditEvent.objects.count()) == before  # no side effects
    r = acme.post("/api/v1/rules/test", {"rule": rule_dict("tmp", levels=["X"]), "lines": "ERROR a"}, format="json")
    assert r.status_code == 422 and "match.levels" in r.json()["error"]["details"]["errors"][0]
    assert acme.post("/api/v1/rules/test", {"key": "errors"}, format="json").status_code == 400


def test_openapi_schema_documents_rules(api):
    r = api().get("/api/schema/")
    assert r.status_code == 200
    text = r.content.decode()
    assert "/api/v1/rules/{key}/overrides" in text and "/api/v1/rules/test" in text
