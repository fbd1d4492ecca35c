"""Read side of the tenants app."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection

from apps.core.errors import NotFound, Unprocessable
from apps.core.fastpath import pg_array, pg_text_array

from .models import Plugin, Tenant


def tenant_of_request(principal: Any, slug: str | None) -> Tenant:
    """The tenant an API call manages: the token's own (naming another is 404, as for any object of
    another tenant), or for a platform token the one it names (422 when it names none, 404 for an
    unknown slug)."""
    if principal.tenant_id is not None:
        if slug and slug != principal.tenant_slug:
            raise NotFound(f"no tenant {slug!r}")
        return Tenant.objects.get(pk=principal.tenant_id)
    if not slug:
        raise Unprocessable("tenant: a platform token must name the tenant (slug)", details={"tenant": ["required"]})
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        raise NotFound(f"no tenant {slug!r}")
    return tenant


def plugins_of_pairs(pairs: Iterable[tuple[int, str]]) -> dict[tuple[int, str], Plugin]:
    """The registered plugins among ``pairs`` (tenant id, slug), by pair (see ``_pair_rows``)."""
    names = [f.attname for f in Plugin._meta.concrete_fields]
    plugins = (Plugin.from_db(DEFAULT_DB_ALIAS, names, row) for row in _pair_rows(pairs, names))
    return {(p.tenant_id, p.slug): p for p in plugins}


def plugin_ids_of_pairs(pairs: Iterable[tuple[int, str]]) -> dict[tuple[int, str], int]:
    """The ids of the registered plugins among ``pairs``, by pair: no model instance built (intake
    looks up a request's new plugins with it)."""
    return {(t, s): pk for pk, t, s in _pair_rows(pairs, ["id", "tenant_id", "slug"])}


def _pair_rows(pairs: Iterable[tuple[int, str]], columns: list[str]) -> list[tuple]:
    """``columns`` of the plugins whose (tenant id, slug) is among ``pairs``.

    On PostgreSQL one probe of the (tenant, slug) unique index per pair. The ORM's form, ``tenant_id
    IN (..) AND slug IN (..)``, reads every plugin of the batch's tenants: 28 ms a detect batch at
    10,400 plugins (bench/storm.py), and on a table the planner has no statistics of yet (a storm's
    new plugins) a scan of the whole table. The ``LIMIT 1`` subquery keeps it a nested loop of index
    probes whatever the statistics say. Elsewhere (SQLite) the ORM's form, filtered here.
    """
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
