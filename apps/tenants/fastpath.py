"""The tenants app's vendor-specific SQL, each operation beside its portable ORM twin: plugins
looked up by exact (tenant, slug) pair, and registered in one statement.

Raw SQL kept: the pair lookup. The ORM's form, ``tenant_id IN (..) AND slug IN (..)``, reads every
plugin of a batch's tenants: 28 ms a detect batch at 10,400 plugins (bench/storm.py), and on a
table the planner has no statistics of yet (a storm's new plugins) a scan of the whole table. Here
it is one probe of the (tenant, slug) unique index per pair, whatever the statistics say.

Raw SQL kept: the insert. ``bulk_create`` prepared every value of every row through its field
(a quarter of the intake's CPU in a storm, where each request registers ~100 plugins) and told
nothing of the ids, so each caller read the rows back. One ``INSERT .. ON CONFLICT DO NOTHING
RETURNING`` does both.

Both tested on real PostgreSQL and real SQLite (``tests/tenants/test_fastpath.py``).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db import DEFAULT_DB_ALIAS, connection
from django.utils import timezone

from apps.core.fastpath import pg_array, pg_text_array

from .models import Plugin

Pair = tuple[int, str]  # (tenant id, plugin slug)


def plugins_of_pairs(pairs: Iterable[Pair]) -> dict[Pair, Plugin]:
    """The registered plugins among ``pairs`` (tenant id, slug), by pair (see ``_pair_rows``)."""
    names = [f.attname for f in Plugin._meta.concrete_fields]
    plugins = (Plugin.from_db(DEFAULT_DB_ALIAS, names, row) for row in _pair_rows(pairs, names))
    return {(p.tenant_id, p.slug): p for p in plugins}


def plugin_ids_of_pairs(pairs: Iterable[Pair]) -> dict[Pair, int]:
    """The ids of the registered plugins among ``pairs``, by pair: no model instance built (intake
    looks up a request's new plugins with it)."""
    return {(t, s): pk for pk, t, s in _pair_rows(pairs, ["id", "tenant_id", "slug"])}


def _pair_rows(pairs: Iterable[Pair], columns: list[str]) -> list[tuple]:
    """``columns`` of the plugins whose (tenant id, slug) is among ``pairs``: on PostgreSQL one probe
    of the unique index per pair (the ``LIMIT 1`` subquery keeps it a nested loop of probes whatever
    the statistics say), elsewhere the ORM's form, filtered here."""
    wanted = set(pairs)
    if not wanted:
        return []
    if connection.vendor != "postgresql":
        rows = (Plugin.objects.filter(tenant_id__in={t for t, _ in wanted}, slug__in={s for _, s in wanted})
                .order_by().values_list(*columns))
        t, s = columns.index("tenant_id"), columns.index("slug")
        return [row for row in rows if (row[t], row[s]) in wanted]
    ordered = sorted(wanted)
    table = Plugin._meta.db_table
    selected = ", ".join(f'p."{name}"' for name in columns)
    with connection.cursor() as cursor:
        cursor.execute(
            f'SELECT {selected} FROM unnest(%s::bigint[], %s::text[]) AS v(t, s) CROSS JOIN LATERAL ('
            f'SELECT * FROM "{table}" AS q WHERE q."tenant_id" = v.t AND q."slug" = v.s LIMIT 1) AS p',
            [pg_array(str(t) for t, _ in ordered), pg_text_array(s for _, s in ordered)])
        return cursor.fetchall()


def insert_plugins(pairs: Sequence[Pair]) -> dict[Pair, int]:
    """Register the plugins of ``pairs`` (named after their slug) in the caller's transaction, in the
    order given, and return the id of every pair: inserted now, or already there (a concurrent
    transaction registered it first: the insert skips it, waiting for that transaction as a plain
    INSERT would, and it is read back).

    Callers pass ``pairs`` sorted, so two transactions registering overlapping sets insert in one
    order and queue on the unique index instead of deadlocking.
    """
    if not pairs:
        return {}
    if connection.vendor != "postgresql":
        Plugin.objects.bulk_create([Plugin(tenant_id=t, slug=s, name=s) for t, s in pairs], ignore_conflicts=True)
        return plugin_ids_of_pairs(pairs)
    with connection.cursor() as cursor:
        cursor.execute(
            f'INSERT INTO "{Plugin._meta.db_table}" ("tenant_id", "slug", "name", "owner", "created_at") '
            f"SELECT v.t, v.s, v.s, '', %s FROM unnest(%s::bigint[], %s::text[]) WITH ORDINALITY AS v(t, s, i) "
            f'ORDER BY v.i ON CONFLICT DO NOTHING RETURNING "id", "tenant_id", "slug"',
            [timezone.now(), pg_array(str(t) for t, _ in pairs), pg_text_array(s for _, s in pairs)])
        ids = {(t, s): pk for pk, t, s in cursor.fetchall()}
    skipped = [p for p in pairs if p not in ids]
    if skipped:
        ids.update(plugin_ids_of_pairs(skipped))
    return ids
