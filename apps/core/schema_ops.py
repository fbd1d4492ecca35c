"""Migration operations shared by several apps' migrations."""
from __future__ import annotations

from django.db import migrations


def set_fillfactor(table: str, percent: int, previous: int | None = None) -> migrations.RunPython:
    """Leave ``100 - percent`` % of each page of ``table`` free, so an update that changes no
    indexed column can stay on its page (a HOT update); reversed, ``previous`` (or the default)
    again. PostgreSQL only (SQLite has no fillfactor); existing pages keep their layout until
    rewritten."""

    def alter(schema_editor, clause: str) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(f'ALTER TABLE "{table}" {clause}')

    return migrations.RunPython(lambda apps, schema_editor: alter(schema_editor, f"SET (fillfactor = {percent})"),
                                lambda apps, schema_editor: alter(schema_editor, "RESET (fillfactor)" if previous is None
                                                                  else f"SET (fillfactor = {previous})"))
