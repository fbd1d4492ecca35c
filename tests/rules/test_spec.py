from __future__ import annotations

from pathlib import Path

import pytest

from apps.rules.spec import (
    DEFAULT_GROUP_BY, Match, Override, RulePackError, RuleSpec, Threshold, dump_pack,
    effective_specs, load_pack, parse_rule,
)

ROOT = Path(__file__).resolve().parents[2]

GOOD = """
rules:
  - id: plugin-error-burst
    name: Plugin error burst
    category: error
    match: {levels: [ERROR, FATAL], keywords: [], patterns: []}
    threshold: {count: 20, window: 5m}
    group_by: [tenant_id, plugin_id]
    severity: critical
    cooldown: 10m
    recommended_action: Roll back the plugin's latest release.
    overrides: [{tenant: acme, threshold: {count: 50}}]
"""


def rule(**over) -> dict:
    r = {"id": "x", "name": "X", "category": "error", "match": {"levels": ["ERROR"]},
         "threshold": {"count": 1, "window": "1m"}, "severity": "warning"}
    r.update(over)
    return r


def errors_of(*rules) -> list[str]:
    import json

    with pytest.raises(RulePackError) as exc:
        load_pack(json.dumps({"rules": list(rules)}))
    return exc.value.errors


def test_design_example_loads_with_defaults():
    [spec] = load_pack(GOOD)
    assert spec == RuleSpec(
        id="plugin-error-burst", name="Plugin error burst", category="error",
        match=Match(levels=("ERROR", "FATAL")), threshold=Threshold(20, 300),
        severity="critical", group_by=("tenant_id", "plugin_id"), cooldown_s=600,
        recommended_action="Roll back the plugin's latest release.",
        overrides=(Override(tenant="acme", count=50),))
    assert spec.enabled is True and spec.description == "" and spec.auto_resolve_s is None
    hash(spec)


def test_defaults_for_optional_fields():
    [spec] = load_pack('{"rules": [%s]}' % __import__("json").dumps(rule()))
    assert spec.group_by == DEFAULT_GROUP_BY and spec.cooldown_s == 0
    assert spec.recommended_action == "" and spec.labels == () and spec.overrides == ()


def test_levels_are_canonicalised_and_deduplicated():
    [spec] = load_pack(__import__("json").dumps({"rules": [rule(match={"levels": ["warn", "WARNING", "err"]})]}))
    assert spec.match.levels == ("WARNING", "ERROR")


def test_error_messages_name_rule_and_field():
    errors = errors_of(rule(id="plugin-error-burst", match={"levels": ["EROR"]}))
    assert errors == ["rule 'plugin-error-burst': match.levels: unknown level 'EROR'"]
    assert errors_of(rule(match={})) == ["rule 'x': match: empty (give levels, keywords or patterns)"]
    assert errors_of(rule(match={"levels": [], "keywords": [], "patterns": []})) == [
        "rule 'x': match: empty (give levels, keywords or patterns)"]
    [err] = errors_of(rule(threshold={"count": 3, "window": "5 minutes"}))
    assert err.startswith("rule 'x': threshold.window: bad duration '5 minutes'")
    [err] = errors_of(rule(match={"patterns": [r"(\w+)\s\1"]}))
    assert err.startswith("rule 'x': match.patterns[0]: cannot be compiled by the linear-time engine")
    [err] = errors_of(rule(match={"patterns": ["foo(?=bar)"]}))
    assert "match.patterns[0]: cannot be compiled by the linear-time engine" in err


def test_all_errors_across_the_pack_are_collected():
    errors = errors_of(
        rule(id="a", severity="high", cooldwn="5m", category=" "),
        rule(id="b", threshold={"count": 0, "window": "25h"}, group_by=["tenant_id", "host"]),
        rule(id="a"),
        "not a mapping",
        rule(id=None),
    )
    text = "\n".join(errors)
    for expected in [
        "rule 'a': severity: unknown severity 'high'",
        "rule 'a': cooldwn: unknown key (did you mean 'cooldown'?)",
        "rule 'a': category: must not be empty",
        "rule 'b': threshold.count: 0 out of range",
        "rule 'b': threshold.window: 1d1h out of range (must be between 1s and 1d)",
        "rule 'b': group_by[1]: unknown 'host'",
        "rule 'a': id: duplicate (also rule #1)",
        "rule #4: must be a mapping",
        "rule #5: id: required",
    ]:
        assert expected in text, expected


@pytest.mark.parametrize("over,needle", [
    ({"threshold": {"count": True, "window": "1m"}}, "threshold.count: must be an integer"),
    ({"threshold": {"count": 1}}, "threshold.window: required"),
    ({"threshold": {"count": 1, "window": "1m", "windw": 2}}, "threshold.windw: unknown key"),
    ({"threshold": {"count": 1, "window": 0}}, "threshold.window: 0s out of range"),
    ({"cooldown": -1}, "cooldown: bad duration"),
    ({"cooldown": "1d"}, None),
    ({"auto_resolve": "0s"}, "auto_resolve: 0s out of range"),
    ({"enabled": "yes"}, "enabled: must be true or false"),
    ({"id": "bad id"}, "id: invalid"),
    ({"match": {"levels": ["ERROR"], "keyword": ["x"]}}, "match.keyword: unknown key (did you mean 'keywords'?)"),
    ({"match": {"keywords": ["ok", ""]}}, "match.keywords[1]: must be a non-empty string"),
    ({"match": {"keywords": ["x" * 201]}}, "match.keywords[0]: longer than 200"),
    ({"match": {"keywords": [f"k{i}" for i in range(1001)]}}, "match.keywords: 1001 items, at most 1000"),
    ({"match": {"patterns": [f"p{i}" for i in range(51)]}}, "match.patterns: 51 items, at most 50"),
    ({"match": {"patterns": ["a" * 1001]}}, "match.patterns[0]: longer than 1000"),
    ({"match": {"keywords": "panic"}}, "match.keywords: must be a list"),
    ({"group_by": ["tenant_id", "tenant_id"]}, "group_by[1]: duplicate"),
    ({"group_by": ["fields.source_ip", "trace_id"]}, None),
    ({"labels": {"team": "core", "tier": 1}}, None),
    ({"labels": {"bad key": "x"}}, "labels: invalid key"),
    ({"overrides": [{"tenant": "acme", "severty": "info"}]}, "overrides[0].severty: unknown key"),
    ({"overrides": [{"tenant": "acme"}, {"tenant": "acme"}]}, "overrides[1].tenant: duplicate"),
    ({"overrides": [{"threshold": {"count": 2}}]}, "overrides[0].tenant: required"),
    ({"overrides": [{"tenant": "a", "threshold": {"window": "2d"}}]}, "overrides[0].threshold.window: 2d out of range"),
    ({"overrides": [{"tenant": "a", "severity": "urgent"}]}, "overrides[0].severity: unknown severity"),
    ({"name": None}, "name: required"),
    ({"name": 5}, "name: must be a string"),
    ({"recommended_action": 5}, "recommended_action: must be a string"),
])
def test_field_validation(over, needle):
    import json

    text = json.dumps({"rules": [rule(**over)]})
    if needle is None:
        load_pack(text)
        return
    with pytest.raises(RulePackError) as exc:
        load_pack(text)
    assert any(needle in e for e in exc.value.errors), exc.value.errors


def test_missing_required_keys():
    errors = errors_of({"id": "x"})
    for key in ("name", "category", "match", "threshold", "severity"):
        assert f"rule 'x': {key}: required" in errors


@pytest.mark.parametrize("text,needle", [
    ("", "pack is empty"),
    ("rules: 5", "'rules' must be a list"),
    ("- a\n- b", "expected a mapping"),
    ("rules: []\nextra: 1", "unknown key 'extra'"),
    ("rules: [\n", "not valid YAML/JSON"),
    ("rules:\n  - id: x\n    id: y\n", "duplicate key 'id'"),
])
def test_pack_level_errors(text, needle):
    with pytest.raises(RulePackError) as exc:
        load_pack(text)
    assert needle in str(exc.value)


def test_null_optional_fields_mean_default():
    [spec] = load_pack("rules:\n- {id: x, name: X, category: c, severity: info, description: ,"
                       " threshold: {count: 1, window: 1m}, match: {levels: [ERROR]},"
                       " labels: , overrides: , group_by: , cooldown: }")
    assert (spec.description, spec.labels, spec.overrides, spec.group_by, spec.cooldown_s) == (
        "", (), (), DEFAULT_GROUP_BY, 0)


def test_empty_rule_list_is_valid():
    assert load_pack("rules: []") == []


def test_yaml_boolean_keyword_is_refused():
    with pytest.raises(RulePackError, match="keywords\\[0\\]"):
        load_pack("rules:\n- {id: x, name: X, category: c, severity: info, "
                  "threshold: {count: 1, window: 1m}, match: {keywords: [yes]}}")


NASTY = RuleSpec(
    id="weird.rule_1", name="Ünïcode: 'quotes' \"and\" #hash", category="security: web",
    match=Match(levels=("INFO", "EMERGENCY"),
                keywords=("yes", "123", "null", "a: b", "- dash", "tab\there", "ÄÖ", "  padded  "),
                patterns=(r"(?i)union\s+select", r"^\d{3}-\d+$", r"'\s*or\s+1=1", r"\\x00")),
    threshold=Threshold(7, 5400), severity="emergency",
    group_by=("tenant_id", "fields.source_ip", "trace_id"), cooldown_s=0,
    recommended_action="Multi\nline\naction: do things", enabled=False,
    description="desc # not a comment", auto_resolve_s=90061,
    labels=(("team", "core"), ("tier", "1"), ("on-call", "true")),
    overrides=(Override(tenant="acme", count=50), Override(tenant="globex", window_s=60,
               severity="info", enabled=True, cooldown_s=0), Override(tenant="initech")),
)


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_round_trip(fmt):
    specs = [NASTY] + load_pack(GOOD)
    assert load_pack(dump_pack(specs, fmt)) == specs


def test_round_trip_of_default_pack():
    specs = load_pack((ROOT / "fixtures/log_rules/default.yaml").read_text())
    for fmt in ("yaml", "json"):
        assert load_pack(dump_pack(specs, fmt)) == specs


def test_dump_uses_short_durations():
    out = dump_pack(load_pack(GOOD))
    assert "window: 5m" in out and "cooldown: 10m" in out


def test_dump_rejects_unknown_format():
    with pytest.raises(ValueError):
        dump_pack([], "toml")


def test_overrides_apply_per_tenant():
    [spec] = load_pack(GOOD)
    assert spec.for_tenant("acme").threshold == Threshold(50, 300)
    assert spec.for_tenant("other").threshold == Threshold(20, 300)
    assert spec.for_tenant("acme").overrides == ()
    o = NASTY.for_tenant("globex")
    assert (o.threshold, o.severity, o.enabled, o.cooldown_s) == (Threshold(7, 60), "info", True, 0)
    assert [s.id for s in effective_specs([NASTY], "acme")] == []
    assert [s.id for s in effective_specs([NASTY], "globex")] == ["weird.rule_1"]


def test_parse_rule_single():
    assert parse_rule(rule()).id == "x"
    with pytest.raises(RulePackError):
        parse_rule(rule(severity="x"))


def test_default_pack_loads_and_validates():
    specs = load_pack((ROOT / "fixtures/log_rules/default.yaml").read_text())
    by_id = {s.id: s for s in specs}
    assert set(by_id) == {"plugin-error-burst", "fatal-error", "panic", "security-keywords",
                          "brute-force-login"}
    burst = by_id["plugin-error-burst"]
    assert (burst.match.levels, burst.threshold, burst.cooldown_s, burst.severity) == (
        ("ERROR", "FATAL"), Threshold(20, 300), 600, "critical")
    fatal, panic = by_id["fatal-error"], by_id["panic"]
    assert fatal.threshold.count == 1 and set(fatal.match.levels) == {"FATAL", "EMERGENCY"}
    assert panic.threshold.count == 1 and panic.match.keywords == ("panic",)
    assert not {"FATAL", "EMERGENCY"} & set(panic.match.levels)
    sec = by_id["security-keywords"]
    assert {"unauthorized access", "permission denied", "invalid signature", "sql injection",
            "token leak"} <= set(sec.match.keywords)
    assert sec.match.patterns
    brute = by_id["brute-force-login"]
    assert brute.threshold == Threshold(10, 60)
    assert brute.group_by == ("tenant_id", "plugin_id", "fields.source_ip")
    assert all(s.recommended_action for s in specs)


def test_costly_pattern_refused_with_the_limit_in_the_message(settings):
    settings.RULE_PATTERN_MAX_PROGRAM_SIZE = 500
    [err] = errors_of(rule(match={"patterns": ["ok", "a{1000}"]}))
    assert err.startswith("rule 'x': match.patterns[1]: too costly to match: RE2 program size ")
    assert "exceeds RULE_PATTERN_MAX_PROGRAM_SIZE=500" in err


def test_pattern_cost_limit_follows_the_setting(settings):
    pattern = r"(\w+\s+){50}"  # program size 554
    settings.RULE_PATTERN_MAX_PROGRAM_SIZE = 600
    assert parse_rule(rule(match={"patterns": [pattern]})).match.patterns == (pattern,)
    settings.RULE_PATTERN_MAX_PROGRAM_SIZE = 500
    assert "RULE_PATTERN_MAX_PROGRAM_SIZE=500" in errors_of(rule(match={"patterns": [pattern]}))[0]


def test_shipped_rule_packs_are_within_the_default_pattern_cost():
    for path in sorted((ROOT / "fixtures").rglob("*.yaml")):
        text = path.read_text()
        if text.lstrip().startswith("rules:"):
            load_pack(text)  # raises naming the rule and pattern if any is over the limit


def test_deeply_nested_pack_is_refused_not_a_crash():
    for text in ("[" * 5000 + "]" * 5000, "rules: " + "[" * 5000 + "]" * 5000):
        with pytest.raises(RulePackError, match="nested too deeply"):
            load_pack(text)


@pytest.mark.parametrize("extra", [
    {},  # a log rule
    {"kind": "threshold", "metric": "cpu", "aggregation": "avg", "window": "1m", "op": ">", "value": 0.9,
     "match": None, "threshold": None},  # a metric rule: the same override walk, the same messages
])
def test_overrides_refuse_bad_and_duplicate_tenants_for_every_rule_kind(extra):
    r = {k: v for k, v in rule(**extra).items() if v is not None}
    errs = errors_of({**r, "overrides": [{"tenant": "acme"}, {"tenant": "acme"}, {"tenant": "no such!"}]})
    assert any(e.endswith("overrides[1].tenant: duplicate override for 'acme'") for e in errs), errs
    assert any("overrides[2].tenant: required tenant id, got 'no such!'" in e for e in errs), errs
    assert any(e.endswith("overrides: must be a list, got str") for e in errors_of({**r, "overrides": "acme"}))
