from __future__ import annotations

import pytest

from apps.audit.models import AuditEvent
from apps.core.errors import Conflict, NotFound
from apps.rules import services
from apps.rules.effective import tenant_view
from apps.rules.models import LogRule, RuleOverride, RuleRevision
from apps.rules.selectors import ruleset_version, spec_of, tenant_rows

from .conftest import rule_dict

pytestmark = pytest.mark.django_db


def test_create_writes_revision_audit_and_bumps_ruleset():
    before = ruleset_version()
    rule = services.rule_create(raw=rule_dict(), actor="alice")
    assert (rule.key, rule.version, rule.enabled, rule.threshold_count, rule.window_seconds) == (
        "errors", 1, True, 5, 300)
    assert rule.source == "api" and rule.updated_by == "alice"
    rev = RuleRevision.objects.get(rule=rule)
    assert (rev.version, rev.change, rev.changed_by) == (1, "created", "alice")
    assert rev.spec == rule.spec
    assert AuditEvent.objects.filter(action="rule.created", target_id=str(rule.pk)).count() == 1
    assert ruleset_version() == before + 1


def test_update_versions_and_no_op_update_writes_nothing():
    services.rule_create(raw=rule_dict(), actor="alice")
    v = ruleset_version()
    rule = services.rule_update(key="errors", raw=rule_dict(count=9), actor="bob")
    assert rule.version == 2 and rule.threshold_count == 9 and rule.updated_by == "bob"
    assert list(rule.revisions.values_list("version", "change")) == [(2, "updated"), (1, "created")]
    assert ruleset_version() == v + 1
    services.rule_update(key="errors", raw=rule_dict(count=9), actor="bob")
    assert LogRule.objects.get().version == 2 and RuleRevision.objects.count() == 2 and ruleset_version() == v + 1


def test_patch_disable_and_history():
    services.rule_create(raw=rule_dict(), actor="a")
    rule = services.rule_patch(key="errors", changes={"severity": "warning"}, actor="a")
    assert rule.severity == "warning" and rule.spec["threshold"] == {"count": 5, "window": "5m"}
    rule = services.rule_disable(key="errors", actor="a")
    assert not rule.enabled and rule.version == 3 and rule.spec["enabled"] is False
    assert rule.revisions.first().change == "disabled"
    assert services.rule_disable(key="errors", actor="a").version == 3  # idempotent
    assert set(AuditEvent.objects.values_list("action", flat=True)) >= {"rule.created", "rule.updated",
                                                                         "rule.disabled"}


def test_validation_errors_name_rule_and_field():
    bad = rule_dict(levels=["EROR"], cooldown="5 minutes", patterns=["(?<=x)y"], severity="urgent")
    with pytest.raises(services.RuleInvalid) as exc:
        services.rule_create(raw=bad, actor="a")
    errors = exc.value.errors
    assert any(e.startswith("rule 'errors': match.levels: unknown level 'EROR'") for e in errors)
    assert any(e.startswith("rule 'errors': cooldown: bad duration") for e in errors)
    assert any(e.startswith("rule 'errors': match.patterns[0]: cannot be compiled") for e in errors)
    assert any(e.startswith("rule 'errors': severity: unknown severity") for e in errors)
    assert exc.value.status_code == 422 and exc.value.details == {"errors": errors}
    assert not LogRule.objects.exists() and not AuditEvent.objects.exists()


def test_empty_match_and_reserved_key_and_duplicates_refused():
    with pytest.raises(services.RuleInvalid, match=r"rule 'x': match: empty"):
        services.rule_create(raw=rule_dict("x", levels=()), actor="a")
    with pytest.raises(services.RuleInvalid, match=r"rule 'export': id: 'export' is reserved"):
        services.rule_create(raw=rule_dict("export"), actor="a")
    services.rule_create(raw=rule_dict(), actor="a")
    with pytest.raises(Conflict):
        services.rule_create(raw=rule_dict(), actor="a")
    with pytest.raises(services.RuleInvalid, match="id: cannot be changed"):
        services.rule_update(key="errors", raw=rule_dict("other"), actor="a")
    with pytest.raises(NotFound):
        services.rule_update(key="nope", raw=rule_dict("nope"), actor="a")


def test_tenant_override_layers_over_pack_override(tenant):
    services.rule_create(raw=rule_dict(count=10, overrides=[{"tenant": "acme", "threshold": {"count": 50},
                                                             "severity": "warning"}]), actor="a")
    rule_version = LogRule.objects.get().version
    v = ruleset_version()
    row = services.override_set(key="errors", tenant=tenant, body={"threshold": {"count": 3}, "cooldown": "1m"},
                                actor="acme-token")
    assert (row.threshold_count, row.cooldown_seconds, row.severity, row.window_seconds) == (3, 60, "", None)
    assert ruleset_version() == v + 1 and LogRule.objects.get().version == rule_version
    view = tenant_view(spec_of(LogRule.objects.get()), "acme", tenant_rows(tenant.pk, "acme"))
    assert (view.threshold.count, view.severity, view.cooldown_s) == (3, "warning", 60)  # pack severity kept
    assert AuditEvent.objects.filter(action="rule.override_set", tenant_id=tenant.pk).exists()

    assert services.override_clear(key="errors", tenant="acme", actor="a") is True
    assert services.override_clear(key="errors", tenant="acme", actor="a") is False
    assert not RuleOverride.objects.exists()


def test_override_validation_names_field(tenant):
    services.rule_create(raw=rule_dict(), actor="a")
    with pytest.raises(services.RuleInvalid) as exc:
        services.override_set(key="errors", tenant=tenant, body={"threshold": {"count": 0}, "severity": "x"},
                              actor="a")
    assert "rule 'errors': override.threshold.count: 0 out of range (must be 1..1000000)" in exc.value.errors
    assert any(e.startswith("rule 'errors': override.severity: unknown severity") for e in exc.value.errors)
    with pytest.raises(services.RuleInvalid, match="override.treshold: unknown key"):
        services.override_set(key="errors", tenant=tenant, body={"treshold": {}}, actor="a")
    with pytest.raises(NotFound):
        services.override_set(key="errors", tenant="nobody", body={}, actor="a")
