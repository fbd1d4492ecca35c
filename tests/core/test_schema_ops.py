"""Reversing a fillfactor migration puts back what the one before it set, so migrating back to any
earlier state leaves each table as that state had it (not PostgreSQL's default)."""
from __future__ import annotations

import importlib

import pytest
from django.apps import apps as registry
from django.db import connection, migrations

pytestmark = pytest.mark.django_db

NOW = {"alerts_alert": 50, "rules_windowstate": 50, "rules_metricrollup": 70}
# Per table, the migrations that set its fillfactor, newest first, and what each left before it.
HISTORY = {
    "alerts_alert": [("alerts", "0010_alert_fillfactor_50", 70), ("alerts", "0008_alert_fillfactor", 85),
                     ("alerts", "0006_drop_covered_fk_indexes", 100)],
    "rules_windowstate": [("rules", "0009_window_index_by_hash", 80), ("rules", "0007_lean_indexes", None)],
    "rules_metricrollup": [("rules", "0006_metricrollup_fillfactor", None)],
}


def fillfactor(table: str) -> int | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = %s", [table])
        [options] = cursor.fetchone()
    found = [int(o.split("=")[1]) for o in options or () if o.startswith("fillfactor=")]
    return found[0] if found else None


@pytest.mark.parametrize("table", sorted(HISTORY))
def test_reversing_each_fillfactor_migration_restores_the_previous_setting(table):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no fillfactor")
    assert fillfactor(table) == NOW[table]
    for app, name, before in HISTORY[table]:
        module = importlib.import_module(f"apps.{app}.migrations.{name}")
        [op] = [op for op in module.Migration.operations if isinstance(op, migrations.RunPython)]
        # Inside the test's transaction: the ALTERs are rolled back with it.
        with connection.schema_editor(atomic=True) as editor:
            op.reverse_code(registry, editor)
        assert fillfactor(table) == before, f"reversing {app}.{name}"
