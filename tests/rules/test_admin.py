from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from apps.rules import services
from apps.rules.models import LogRule, RuleOverride, RuleRevision

from .conftest import rule_dict

pytestmark = pytest.mark.django_db

ADD = "/admin/rules/logrule/add/"


def form_data(**kw) -> dict:
    data = {"key": "errors", "name": "Errors", "category": "error", "description": "", "enabled": "on",
            "levels": "ERROR, FATAL", "keywords": "", "patterns": "", "threshold_count": "5", "window": "5m",
            "group_by": "tenant_id, plugin_id", "severity": "critical", "cooldown": "10m", "auto_resolve": "",
            "recommended_action": "Roll back.", "labels": "", "overrides": "",
            # empty inline formsets
            "tenant_overrides-TOTAL_FORMS": "0", "tenant_overrides-INITIAL_FORMS": "0",
            "revisions-TOTAL_FORMS": "0", "revisions-INITIAL_FORMS": "0"}
    data.update(kw)
    return data


@pytest.fixture
def superuser_client(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "a-long-password")
    client.force_login(user)
    return client


def test_bad_rule_shows_errors_inline_naming_the_field(superuser_client):
    r = superuser_client.post(ADD, form_data(levels="ERROR, EROR", window="5 minutes", patterns="(a)\\1"))
    assert r.status_code == 200
    form = r.context["adminform"].form
    assert "rule 'errors': match.levels: unknown level 'EROR'" in form.errors["levels"]
    assert form.errors["window"][0].startswith("rule 'errors': threshold.window: bad duration '5 minutes'")
    assert "match.patterns[0]: cannot be compiled" in form.errors["patterns"][0]
    assert "unknown level" in r.content.decode()
    assert not LogRule.objects.exists()


def test_valid_rule_saved_through_services_with_revision(superuser_client):
    r = superuser_client.post(ADD, form_data(keywords="db down\ntimeout", labels="{team: payments}"))
    assert r.status_code == 302, r.context["adminform"].form.errors if r.context else r
    rule = LogRule.objects.get()
    assert rule.source == "admin" and rule.updated_by == "root" and rule.version == 1
    assert rule.spec["match"]["keywords"] == ["db down", "timeout"] and rule.spec["labels"] == {"team": "payments"}
    change = f"/admin/rules/logrule/{rule.pk}/change/"
    page = superuser_client.get(change)
    assert page.status_code == 200 and "db down" in page.content.decode()
    r = superuser_client.post(change, form_data(key="ignored", threshold_count="7", keywords="db down\ntimeout",
                                                labels="{team: payments}"))
    assert r.status_code == 302
    rule.refresh_from_db()
    assert (rule.key, rule.threshold_count, rule.version) == ("errors", 7, 2)
    assert list(RuleRevision.objects.values_list("version", flat=True)) == [2, 1]
    assert superuser_client.post(f"/admin/rules/logrule/{rule.pk}/delete/").status_code == 403


def test_dry_run_page(superuser_client):
    services.rule_create(raw=rule_dict(count=2), actor="a")
    url = "/admin/rules/logrule/dry-run/"
    assert superuser_client.get(url + "?rules=errors").status_code == 200
    r = superuser_client.post(url, {"tenant": "acme", "rules": ["errors"], "samples": "ERROR one\nERROR two\nINFO x"})
    assert r.status_code == 200
    result = r.context["result"]
    assert [e["rules"] for e in result.events] == [["errors"], ["errors"], []]
    assert result.groups[0].would_fire and "YES (at line 2)" in r.content.decode()
    r = superuser_client.post(url, {"rule_yaml": "id: tmp\nname: t\ncategory: c\nmatch: {keywords: [x]}\n"
                                                 "threshold: {count: 1, window: 1m}\nseverity: info",
                                    "samples": "INFO has x"})
    assert r.context["result"].groups[0].rule == "tmp"
    r = superuser_client.post(url, {"rule_yaml": "id: tmp\nname: t\ncategory: c\nmatch: {levels: [NOPE]}\n"
                                                 "threshold: {count: 1, window: 1m}\nseverity: info",
                                    "samples": "INFO x"})
    assert "unknown level" in r.content.decode() and r.context["result"] is None


def test_import_and_export_pages(superuser_client):
    pack = "rules:\n" + "\n".join("  " + line for line in
                                  "- {id: a, name: A, category: c, match: {levels: [ERROR]}, "
                                  "threshold: {count: 1, window: 1m}, severity: info}".splitlines())
    r = superuser_client.post("/admin/rules/logrule/import/", {"pack": pack})
    assert r.status_code == 302 and LogRule.objects.get().source == "admin"
    r = superuser_client.post("/admin/rules/logrule/import/", {"pack": pack.replace("info", "loud")})
    assert r.status_code == 200 and "severity: unknown severity" in r.content.decode()
    r = superuser_client.get("/admin/rules/logrule/export/")
    assert r.status_code == 200 and b"id: a" in r.content
    assert superuser_client.get("/admin/rules/logrule/").status_code == 200


def test_override_admin_validates_and_uses_services(superuser_client, tenant):
    rule = services.rule_create(raw=rule_dict(), actor="a")
    url = "/admin/rules/ruleoverride/add/"
    r = superuser_client.post(url, {"rule": rule.pk, "tenant": tenant.pk, "threshold_count": "0"})
    assert r.status_code == 200 and "override.threshold.count" in r.content.decode()
    r = superuser_client.post(url, {"rule": rule.pk, "tenant": tenant.pk, "threshold_count": "3"})
    assert r.status_code == 302 and RuleOverride.objects.get().threshold_count == 3


def test_governance_can_edit_auditors_only_view(client):
    User = get_user_model()
    gov = User.objects.create_user("gov", password="a-long-password", is_staff=True)
    gov.groups.add(Group.objects.get(name="governance"))
    aud = User.objects.create_user("aud", password="a-long-password", is_staff=True)
    aud.groups.add(Group.objects.get(name="auditors"))
    client.force_login(gov)
    assert client.get(ADD).status_code == 200
    client.force_login(aud)
    assert client.get(ADD).status_code == 403
    assert client.get("/admin/rules/logrule/").status_code == 200
    assert client.get("/admin/rules/logrule/dry-run/").status_code == 200
