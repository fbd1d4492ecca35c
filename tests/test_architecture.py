"""The layering of DESIGN.md section 8, checked on every import in apps/ (an ``ast`` walk, so lazy
imports inside functions count too).

Data flows ingest -> rules -> alerts -> delivery and imports follow it: an app may import the apps
downstream of it, never upstream. core and audit are below everything, tenants below the
pipeline; ops and console sit on top, and so do each app's outer layers (``api/``, ``admin.py``,
``management/``): they may use any app, the way a view uses several services.
"""
from __future__ import annotations

import ast
from pathlib import Path

APPS_DIR = Path(__file__).resolve().parent.parent / "apps"

BELOW = {
    "core": set(),
    "audit": {"core"},
    "tenants": {"core", "audit"},
    "stream": {"core", "audit", "tenants"},
    "delivery": {"core", "audit", "tenants", "stream"},
    "alerts": {"core", "audit", "tenants", "delivery", "stream"},
    "rules": {"core", "audit", "tenants", "delivery", "alerts", "stream"},
    "ingest": {"core", "audit", "tenants", "delivery", "alerts", "rules", "stream"},
    # Tickets and remediation sit above alerts and delivery; neither ever imports them.
    "actions": {"core", "audit", "tenants", "delivery", "alerts"},
}
TOP = {"ops", "console", "reports"}
OUTER = ("api", "admin", "management", "migrations")  # an app's outer layer: may use any app


def _imported_apps(source: str, module: str) -> set[tuple[str, int]]:
    """(app, line) for every ``apps.<app>`` this module imports (relative imports resolved)."""
    found = set()
    package = module.split(".")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package[: len(package) - node.level]
                base = ".".join(parent + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if len(parts) >= 2 and parts[0] == "apps":
                found.add((parts[1], node.lineno))
    return found


def violations(source: str, module: str) -> list[str]:
    """What ``module`` (dotted, e.g. ``apps.delivery.outbox``) imports against the layering."""
    parts = module.split(".")
    app = parts[1]
    if app in TOP or (len(parts) > 2 and parts[2] in OUTER):
        return []
    allowed = BELOW.get(app)
    if allowed is None:
        return [f"{module}: app {app!r} has no place in the layering (add it to BELOW or TOP)"]
    return [f"{module}:{line} imports apps.{other} (allowed for {app}: {', '.join(sorted(allowed)) or 'none'})"
            for other, line in sorted(_imported_apps(source, module)) if other != app and other not in allowed]


def _modules():
    for path in sorted(APPS_DIR.rglob("*.py")):
        rel = path.relative_to(APPS_DIR.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1] + ["__init__"]
        yield ".".join(parts), path


def test_every_import_follows_the_layering():
    problems = []
    for module, path in _modules():
        if module.count(".") < 2:
            continue
        problems += violations(path.read_text(encoding="utf-8"), module)
    assert not problems, "imports against the layering (DESIGN.md 8):\n  " + "\n  ".join(problems)


def test_every_app_has_a_place():
    apps = {p.name for p in APPS_DIR.iterdir() if (p / "apps.py").exists()}
    assert apps <= set(BELOW) | TOP, apps - set(BELOW) - TOP


def test_the_checker_catches_reverse_imports():
    # delivery reaching back into alerts, top-level or lazily inside a function, absolute or relative
    assert violations("from apps.alerts.models import Alert\n", "apps.delivery.outbox")
    assert violations("def f():\n    from apps.alerts import services\n", "apps.delivery.recording")
    assert violations("from ...ingest.normalize import Event\n", "apps.rules.sub.engine")
    assert violations("import apps.ops.figures\n", "apps.core.health")
    # allowed: downstream, below, and the outer layers / top apps using anything
    assert not violations("from apps.delivery import outbox\n", "apps.alerts.history")
    assert not violations("from apps.ingest.samples import parse_samples\n", "apps.rules.api.views")
    assert not violations("from apps.alerts.models import Alert\n", "apps.ops.figures")
    assert not violations("from .models import Delivery\n", "apps.delivery.outbox")
