"""Every ``both_databases`` test again, on a real SQLite file (the embedded default of ``make run``).

The normal run (PostgreSQL) runs the marked tests as usual; this one test runs them a second time
in a subprocess with ``DATABASE_URL=sqlite:///...``, so each fast-path module's portable twin is
exercised by the real SQLite engine rather than by faking ``connection.vendor``.
"""
from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from django.db.migrations.loader import MigrationLoader

ROOT = Path(__file__).resolve().parent.parent
SUBPROCESS_TIMEOUT_S = 600


def _marked_files() -> list[str]:
    """Test files that use the marker: collecting only these keeps the run short and independent
    of unrelated modules (and of their imports)."""
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py")
                  if p.name != Path(__file__).name and "both_databases" in p.read_text(encoding="utf-8"))


def _count(summary: str, word: str) -> int:
    found = re.search(rf"(\d+) {word}", summary)
    return int(found.group(1)) if found else 0


@pytest.mark.timeout(SUBPROCESS_TIMEOUT_S + 60)
def test_both_databases_tests_pass_on_a_real_sqlite_file(tmp_path):
    files = _marked_files()
    assert files, "no test file uses @pytest.mark.both_databases"
    db_file = tmp_path / "fastpath.sqlite3"
    # REDIS_URL and the rest of the caller's environment pass through unchanged (own Redis db).
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db_file}"}
    # --reuse-db keeps the test database file after the run so its mode and migrations can be read.
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "both_databases", "-q", "-p", "no:randomly", "--reuse-db", *files],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)
    output = proc.stdout + proc.stderr
    summary = next((line for line in reversed(proc.stdout.splitlines()) if re.search(r"\d+ (passed|failed|error)", line)), "")
    assert proc.returncode == 0 and _count(summary, "passed") > 0, f"SQLite run failed ({proc.returncode}):\n{output}"
    assert _count(summary, "failed") == _count(summary, "error") == 0, output

    test_db = db_file.with_name(f"test_{db_file.name}")
    with sqlite3.connect(test_db) as sqlite:
        assert sqlite.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        applied = set(sqlite.execute("SELECT app, name FROM django_migrations").fetchall())
    assert applied >= set(MigrationLoader(None, ignore_no_migrations=True).disk_migrations)
