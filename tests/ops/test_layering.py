"""DESIGN 8: ops sits on top. No app below it imports apps.ops, and the beat schedule's task names
(a contract with already-queued messages) still resolve after the move."""
from __future__ import annotations

import ast
from pathlib import Path

from django.conf import settings

APPS = Path(settings.BASE_DIR) / "apps"
ON_TOP = {"ops", "console"}  # DESIGN 8: ops, console and the API may import every app


def imported_modules(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def test_no_app_below_ops_imports_it():
    offenders = [
        f"{path.relative_to(APPS.parent)} imports {module}"
        for app in sorted(p for p in APPS.iterdir() if p.is_dir() and p.name not in ON_TOP)
        for path in sorted(app.rglob("*.py"))
        for module in sorted(imported_modules(path))
        if module == "apps.ops" or module.startswith("apps.ops.")
    ]
    assert not offenders, offenders


def test_beat_tasks_keep_their_names():
    from alertcenter.celery import app

    app.loader.import_default_modules()
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert scheduled <= set(app.tasks), scheduled - set(app.tasks)
    assert app.tasks["system.checks"].__module__ == "apps.ops.tasks"
    assert app.tasks["system.purge_expired"].__module__ == "apps.ops.tasks"
    # An earlier release's beat sends the partition task under its old name.
    assert app.tasks["ingest.partitions"].__module__ == app.tasks["system.partitions"].__module__ == "apps.ops.tasks"
