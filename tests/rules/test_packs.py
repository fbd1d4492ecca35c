from __future__ import annotations

import json
import shutil
from io import StringIO
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command

from apps.rules.models import LogRule, RuleRevision
from apps.rules.spec import load_pack

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "fixtures" / "log_rules"

pytestmark = pytest.mark.django_db


def sync(path) -> str:
    out = StringIO()
    call_command("sync_rules", str(path), stdout=out, stderr=StringIO())
    return out.getvalue()


def test_sync_default_pack_is_idempotent():
    out = sync(DEFAULT)
    n = len(load_pack((DEFAULT / "default.yaml").read_text()))
    assert f"created {n}, updated 0, unchanged 0, disabled 0" in out
    assert LogRule.objects.get(key="plugin-error-burst").source == "pack:log_rules/default.yaml"
    assert "created 0, updated 0, unchanged %d, disabled 0" % n in sync(DEFAULT)
    assert RuleRevision.objects.count() == n


def test_sync_updates_and_disables_vanished_rules(tmp_path):
    pack = tmp_path / "packs"
    pack.mkdir()
    shutil.copy(DEFAULT / "default.yaml", pack / "default.yaml")
    sync(pack)
    doc = yaml.safe_load((pack / "default.yaml").read_text())
    doc["rules"] = [r for r in doc["rules"] if r["id"] != "panic"]
    doc["rules"][0]["threshold"]["count"] = 99
    (pack / "default.yaml").write_text(yaml.safe_dump(doc))
    out = sync(pack)
    assert "created 0, updated 1, unchanged 3, disabled 1" in out
    assert LogRule.objects.get(key="plugin-error-burst").threshold_count == 99
    panic = LogRule.objects.get(key="panic")
    assert not panic.enabled and panic.revisions.first().change == "disabled"
    assert "created 0, updated 0, unchanged 4, disabled 0" in sync(pack)


def test_bad_pack_is_refused_whole_with_every_error(tmp_path):
    (tmp_path / "a.yaml").write_text((DEFAULT / "default.yaml").read_text())
    (tmp_path / "b.yml").write_text(yaml.safe_dump({"rules": [
        {"id": "bad-one", "name": "x", "category": "c", "match": {"levels": ["EROR"]},
         "threshold": {"count": 1, "window": "5 min"}, "severity": "critical"},
        {"id": "bad-two", "name": "y", "category": "c", "match": {"patterns": ["(a)\\1"]},
         "threshold": {"count": 1, "window": "1m"}, "severity": "loud"},
        {"id": "panic", "name": "dup", "category": "c", "match": {"levels": ["ERROR"]},
         "threshold": {"count": 1, "window": "1m"}, "severity": "critical"},
    ]}))
    (tmp_path / "c.json").write_text("{not json")
    err = StringIO()
    with pytest.raises(CommandError, match="nothing was changed"):
        call_command("sync_rules", str(tmp_path), stdout=StringIO(), stderr=err)
    text = err.getvalue()
    assert "b.yml: rule 'bad-one': match.levels: unknown level 'EROR'" in text
    assert "b.yml: rule 'bad-one': threshold.window: bad duration '5 min'" in text
    assert "b.yml: rule 'bad-two': match.patterns[0]: cannot be compiled by the linear-time engine" in text
    assert "b.yml: rule 'bad-two': severity: unknown severity 'loud'" in text
    assert "c.json: pack is not valid YAML/JSON" in text
    assert not LogRule.objects.exists()


def test_duplicate_id_across_files_refused(tmp_path):
    for name in ("a.yaml", "b.yaml"):
        shutil.copy(DEFAULT / "default.yaml", tmp_path / name)
    with pytest.raises(CommandError):
        call_command("sync_rules", str(tmp_path), stdout=StringIO(), stderr=StringIO())
    assert not LogRule.objects.exists()


def test_missing_directory_exits_non_zero(tmp_path):
    with pytest.raises(CommandError):
        call_command("sync_rules", str(tmp_path / "nope"), stdout=StringIO(), stderr=StringIO())


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_export_round_trips_through_sync(tmp_path, fmt, tenant):
    sync(DEFAULT)
    from apps.rules import services

    services.rule_patch(key="panic", changes={"labels": {"team": "core"}, "auto_resolve": "30m",
                                              "overrides": [{"tenant": "acme", "threshold": {"count": 3}}]},
                        actor="a")
    services.rule_disable(key="fatal-error", actor="a")
    before = {r.key: (r.spec, r.enabled) for r in LogRule.objects.all()}
    out = StringIO()
    call_command("export_rules", "--format", fmt, stdout=out)
    text = out.getvalue()
    if fmt == "json":
        assert json.loads(text)["rules"][0]["id"] == "brute-force-login"
    export_dir = tmp_path / "export"
    export_dir.mkdir()
    (export_dir / f"rules.{fmt}").write_text(text)
    # Syncing the export back changes nothing...
    assert "updated 0, unchanged 5, disabled 0" in sync(export_dir)
    # ...and into an empty database it recreates the same rules.
    LogRule.objects.all().delete()
    assert "created 5" in sync(export_dir)
    assert {r.key: (r.spec, r.enabled) for r in LogRule.objects.all()} == before
