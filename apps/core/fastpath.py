"""Core's database fast path: ``bulk_insert``, model rows by ``COPY .. FROM STDIN`` on PostgreSQL,
by ``bulk_create`` elsewhere (SQLite, the embedded ``make run``).

Raw SQL kept: the COPY and the id pre-allocation. Justification (bench/README.md, "Alert storms",
``bench/storm.py`` under py-spy): Django 5.2's ``bulk_create`` on PostgreSQL sends each column as
one list parameter (``INSERT .. SELECT * FROM unnest(%s::type[], ..)``), and psycopg's client-side
binding turns every list into an array literal element by element in Python (its ``ListDumper``):
13 % of the storm worker's CPU went there, another 9 % into splitting the placeholders of the
long statements. COPY's rows are formatted by psycopg's C dumpers instead; measured on the
storm's writes (timeline lines, audit rows, stream events, deliveries: 100-row batches) the
insert costs about a third of ``bulk_create``'s CPU (``tests/core/test_fastpath.py`` checks that
rows, ids, defaults and JSON come out the same).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from operator import attrgetter
from typing import TypeVar

import orjson

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Model

M = TypeVar("M", bound=Model)

# Below this many rows one plain INSERT is as cheap as the nextval round trip + COPY.
COPY_MIN_ROWS = 4

_sequences: dict[str, str] = {}


# Array parameters as literals. psycopg adapts a list element by element in Python (its
# ListDumper; with client-side binding it then quotes the result): for a 40-row UPDATE .. FROM
# unnest() of three arrays that is ~0.3 ms of CPU, against ~0.1 ms for one text literal per array
# (measured on this machine, psycopg 3.3, both bindings). Sent with a cast, e.g. ``%s::bigint[]``.

def pg_array(texts: Iterable[str]) -> str:
    """A PostgreSQL array literal of elements that need no quoting (numbers, ISO timestamps, NULL)."""
    return "{" + ",".join(texts) + "}"


def pg_text_array(values: Iterable[str | None]) -> str:
    """A PostgreSQL array literal of strings, each quoted (backslash and double quote escaped);
    None is NULL."""
    return "{" + ",".join("NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
                          for v in values) + "}"


def pg_null(text: str | None) -> str:
    """An array element: ``text``, or NULL when it is empty or None."""
    return text if text else "NULL"


def bulk_insert(objs: Sequence[M]) -> Sequence[M]:
    """Insert unsaved instances of one model in the caller's transaction and set their ``pk``, as
    ``bulk_create(objs)`` does (field defaults and ``auto_now_add`` applied, ``_state`` updated),
    in order: the ids ascend with ``objs``. Instances whose ids ``reserve_ids`` gave them are
    written with those ids (all of ``objs`` or none)."""
    if not objs:
        return objs
    model = type(objs[0])
    reserved = objs[0].pk is not None
    if not reserved and (connection.vendor != "postgresql" or len(objs) < COPY_MIN_ROWS):
        return model.objects.bulk_create(objs)
    meta = model._meta
    fields = [f for f in meta.concrete_fields if f is not meta.pk]
    # The thread's own connection object, not the ``connection`` proxy: each attribute read through
    # the proxy is a thread-local lookup, thousands per batch in ``get_db_prep_save``.
    conn = connections[DEFAULT_DB_ALIAS]
    prep = [_preparer(f, conn) for f in fields]
    ids = [obj.pk for obj in objs] if reserved else _new_ids(conn, meta, len(objs))
    _copy_rows(conn, meta, fields, ids, ([to_db(obj) for to_db in prep] for obj in objs))
    for obj, pk_value in zip(objs, ids):
        obj.pk = pk_value
        obj._state.adding, obj._state.db = False, conn.alias
    return objs


def reserve_ids(objs: Sequence[Model]) -> None:
    """Give unsaved instances of one model ids from its table's sequence (ascending, in order)
    without writing them; ``bulk_insert`` writes them later with these ids, so rows that refer to
    them can be written first (a foreign key is checked at commit: Django's are deferred).
    ``_state.adding`` stays True until they are written. PostgreSQL only (SQLite has no sequence)."""
    if not objs:
        return
    conn = connections[DEFAULT_DB_ALIAS]
    for obj, pk_value in zip(objs, _new_ids(conn, type(objs[0])._meta, len(objs))):
        obj.pk = pk_value


# Fields whose attribute value is what COPY sends (``get_db_prep_save`` would return it unchanged
# for the values these fields hold), so it is read straight off the instance: the generic
# ``pre_save`` + ``get_db_prep_save`` per cell was 5 % of the storm worker (bench/storm.py, py-spy).
_AS_IS = frozenset({
    "CharField", "TextField", "SlugField", "IntegerField", "BigIntegerField", "SmallIntegerField",
    "PositiveIntegerField", "PositiveSmallIntegerField", "PositiveBigIntegerField", "BooleanField", "FloatField",
    "ForeignKey", "DateTimeField",
})


_constructors: dict[type, tuple[list, frozenset, dict]] = {}


def instance(model: type[M], values: dict, related: dict[str, Model | None] | None = None) -> M:
    """``model(**values, **related)`` built through Django's positional constructor (the one
    ``from_db`` uses): ``values`` by attname (``tenant_id``), the missing fields get their defaults,
    and each ``related`` object (by field name: ``tenant``) sets its id and is cached on the
    instance as assigning it would. For the rows built by the hundred per batch (a storm's alerts and
    deliveries), where the keyword constructor's per-field lookups cost more than the values
    (bench/storm.py under py-spy: 8 % of the storm worker)."""
    spec = _constructors.get(model)
    if spec is None:
        fields = [(f.attname, f) for f in model._meta.concrete_fields]
        relations = {f.name: f for f in model._meta.concrete_fields if f.is_relation}
        spec = _constructors[model] = (fields, frozenset(a for a, _ in fields), relations)
    fields, known, relations = spec
    if related:
        values = {**values, **{relations[name].attname: (obj.pk if obj is not None else None)
                               for name, obj in related.items()}}
    unknown = values.keys() - known
    if unknown:
        raise TypeError(f"{model.__name__} has no fields {sorted(unknown)}")
    obj = model(*[values[a] if a in values else f.get_default() for a, f in fields])
    for name, rel in (related or {}).items():
        relations[name].set_cached_value(obj, rel)
    return obj


def _preparer(field, conn) -> Callable[[Model], object]:
    """obj -> the value COPY sends for ``field``: the attribute itself where that is what the
    database stores, JSON encoded once as text (orjson; the field's own encoder when it has one),
    else the field's ``pre_save`` and ``get_db_prep_save`` (auto_now dates, binary, IP addresses ...)."""
    kind = field.get_internal_type()
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        kind = "generic"
    if kind in _AS_IS:
        return attrgetter(field.attname)
    if kind == "JSONField":
        name, encode = field.attname, _json_text(field)
        return lambda obj: encode(getattr(obj, name))
    return lambda obj: field.get_db_prep_save(field.pre_save(obj, True), conn)


def _json_text(field) -> Callable[[object], str | None]:
    """A JSON field's value -> its JSON text (None stays NULL): as the ORM encodes it when the field
    has an encoder, else orjson (a storm's alert and delivery rows: several times faster than
    ``json.dumps`` on a webhook payload)."""
    if field.encoder is not None:
        return _orm_json_text(field)
    return lambda value: None if value is None else orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _orm_json_text(field) -> Callable[[object], str | None]:
    """A JSON field's value -> the text Django's PostgreSQL backend sends for it (``json.dumps`` with
    the field's encoder; None stays NULL)."""
    encoder = field.encoder
    return lambda value: None if value is None else json.dumps(value, cls=encoder)


def _sequence(cursor, table: str, column: str) -> str:
    """The sequence behind ``table.column`` (serial or identity), looked up once per process."""
    name = _sequences.get(table)
    if name is None:
        cursor.execute("SELECT pg_get_serial_sequence(%s, %s)", [connection.ops.quote_name(table), column])
        name = _sequences[table] = cursor.fetchone()[0]
    return name


def insert_rows(model: type[Model], columns: Sequence[str], rows: Sequence[Sequence]) -> list[int]:
    """Insert plain rows of ``model`` in the caller's transaction; their new ids, in order.

    ``columns`` are field names (``tenant_id`` for a foreign key); values must be what the column
    stores (ints, strings, aware datetimes, None), except JSON fields, which take Python values and
    are encoded as the ORM encodes them (``json.dumps`` with the field's encoder, if any). Fields left
    out get their model default. For
    append-only rows written by the hundred per batch (timeline lines, audit rows, stream events),
    where building a model instance per row cost more than writing it: no ``Model.__init__``, no
    ``get_db_prep_save`` per field (bench/storm.py under py-spy: 17 % of the storm worker before).
    """
    if not rows:
        return []
    meta = model._meta
    fields = [meta.get_field(name) for name in columns]
    if connection.vendor != "postgresql" or len(rows) < COPY_MIN_ROWS:
        objs = model.objects.bulk_create([model(**dict(zip(columns, row))) for row in rows])
        return [obj.pk for obj in objs]
    conn = connections[DEFAULT_DB_ALIAS]
    given = {f.attname for f in fields}
    missing = [f for f in meta.concrete_fields if f is not meta.pk and f.attname not in given]
    defaults = [_orm_json_text(f)(f.get_default()) if f.get_internal_type() == "JSONField"
                else f.get_db_prep_save(f.get_default(), conn) for f in missing]
    # JSON as text, not the field's psycopg Jsonb wrapper (``get_db_prep_save``): its dumper per value
    # took the CPU of stream and audit rows from ~14.5 to ~19 us a row (measured alternately, 100 a COPY).
    # Encoded exactly as the ORM encodes it (``json.dumps`` with the field's encoder), so a value is
    # refused or stored alike however many rows are written and on either path.
    json_columns = [(i, _orm_json_text(f)) for i, f in enumerate(fields) if f.get_internal_type() == "JSONField"]

    def values(row: Sequence) -> list:
        out = list(row)
        for i, encode in json_columns:
            out[i] = encode(out[i])
        return out + defaults

    ids = _new_ids(conn, meta, len(rows))
    _copy_rows(conn, meta, [*fields, *missing], ids, map(values, rows))
    return ids


def _new_ids(conn, meta, count: int) -> list[int]:
    """``count`` ids from the table's sequence, ascending."""
    with conn.cursor() as cursor:
        cursor.execute("SELECT nextval(%s) FROM generate_series(1, %s) ORDER BY 1",
                       [_sequence(cursor, meta.db_table, meta.pk.column), count])
        return [row[0] for row in cursor.fetchall()]


def _copy_rows(conn, meta, fields: Sequence, ids: Sequence[int], rows: Iterable[list]) -> None:
    """COPY ``rows`` (values of ``fields``, ready for the database) with the ids ``ids``."""
    quote = conn.ops.quote_name
    names = ", ".join(quote(f.column) for f in [meta.pk, *fields])
    # wrap_database_errors: a constraint violation raises Django's IntegrityError, as an INSERT would.
    with conn.cursor() as cursor, conn.wrap_database_errors, \
            cursor.cursor.copy(f"COPY {quote(meta.db_table)} ({names}) FROM STDIN") as copy:
        for pk_value, row in zip(ids, rows):
            copy.write_row([pk_value, *row])


# --------------------------------------------------------------------------- COPY text, by hand
# For rows formatted in one pass by their writer (``apps.ingest.fastpath``). Generic rows go through
# psycopg's ``write_row``: its C formatter was as fast as a per-value Python formatter or faster
# (stream and audit rows, 100 a COPY, alternating: 12-15 us of CPU per row against 12-18).

COPY_NULL = "\\N"


def copy_text(value: str) -> str:
    """``value`` as a field of COPY's text format: backslash, newline, carriage return and tab
    escaped. (PostgreSQL text cannot hold NUL; a value with one is refused, as by an INSERT.)"""
    if "\\" in value or "\n" in value or "\r" in value or "\t" in value:
        value = value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return value
