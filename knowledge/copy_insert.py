"""Insert many rows of a model with PostgreSQL's COPY: the bulk broadcast's item writes.

Django's ``bulk_create`` on PostgreSQL sends one ``INSERT ... SELECT * FROM UNNEST(...)``
whose arrays psycopg builds value by value; COPY streams the rows instead. The ids are drawn
first from the table's own sequence (``nextval`` over ``generate_series``), so the objects
get their primary keys as ``bulk_create`` would give them, and COPY writes them explicitly.

It runs in the caller's transaction, like ``bulk_create``: a failing row fails the COPY and
the caller's savepoint rolls it all back (no partial write). Field values go through the same
``pre_save`` / ``get_db_prep_save`` as ``bulk_create``'s. Other databases, and batches too
small for COPY to pay off, use ``bulk_create``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

import orjson
from django.db import connection
from django.db.models import (
    BooleanField,
    CharField,
    DateTimeField,
    FloatField,
    ForeignKey,
    IntegerField,
    JSONField,
    Model,
    TextField,
)
from django.utils import timezone

#: Field classes whose values of exactly these Python types are their database values
#: (Django's preparation returns them unchanged): written as they are (``_prep``).
PLAIN_TYPES = {
    CharField: frozenset({str}),
    TextField: frozenset({str}),
    IntegerField: frozenset({int}),
    FloatField: frozenset({float, int}),
    BooleanField: frozenset({bool}),
}

#: Below this many rows ``bulk_create`` is as fast (COPY costs two round trips).
MIN_ROWS = 20


def copy_insert(model: type[Model], objs: list[Model]) -> None:
    """Insert ``objs`` (new instances of ``model``) and set their primary keys. Objects that
    all have their primary key set already (the event log's snapshot mode draws its seqs
    itself) are written with those keys, and no key is drawn."""
    if not objs:
        return
    if connection.vendor != "postgresql" or len(objs) < MIN_ROWS:
        model.objects.bulk_create(objs)
        return
    pk = model._meta.pk
    fields = [f for f in model._meta.concrete_fields if f is not pk]
    getters = [_getter(f) for f in fields]
    ids = [getattr(obj, pk.attname) for obj in objs]
    rows = ([get(obj) for get in getters] for obj in objs)
    ids = _copy(model, fields, rows, len(objs), None if None in ids else ids)
    for obj, new_id in zip(objs, ids, strict=True):
        setattr(obj, pk.attname, new_id)
        obj._state.adding = False
        obj._state.db = connection.alias


def copy_rows(
    model: type[Model], names: Sequence[str], rows: list[tuple], ids: list[int] | None = None
) -> list[int]:
    """Insert ``rows`` of ``model`` given as tuples, without model instances (a bulk
    broadcast's events and idempotency records: building an instance per row cost as much
    as writing it). Each tuple holds the Python values of the fields ``names`` (their
    attnames: ``worker_id`` for a foreign key), in that order. Fields with ``auto_now`` or
    ``auto_now_add`` left out of ``names`` are stamped with the time of the insert, as
    ``bulk_create`` does; no other default is applied. Returns the primary keys, drawn from
    the table's sequence unless ``ids`` gives them. Other databases, and fewer rows than
    ``MIN_ROWS``, take ``bulk_create``."""
    if not rows:
        return []
    opts = model._meta
    fields = [opts.get_field(name) for name in names]
    if connection.vendor != "postgresql" or len(rows) < MIN_ROWS:
        attnames = [f.attname for f in fields]
        objs = [model(**dict(zip(attnames, row, strict=True))) for row in rows]
        if ids is not None:
            for obj, new_id in zip(objs, ids, strict=True):
                obj.pk = new_id
        model.objects.bulk_create(objs)
        return [obj.pk for obj in objs]
    stamped = [
        f
        for f in opts.concrete_fields
        if (getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)) and f not in fields
    ]
    preps = [_value_prep(f) for f in fields]
    stamps = [_value_prep(f)(timezone.now()) for f in stamped]
    prepared = (
        [*(prep(value) for prep, value in zip(preps, row, strict=True)), *stamps] for row in rows
    )
    return _copy(model, [*fields, *stamped], prepared, len(rows), ids)


def _copy(model: type[Model], fields: list, rows: Iterable[list], n: int, ids) -> list[int]:
    """COPY ``n`` rows (database values of ``fields``) with ids drawn first unless given."""
    opts = model._meta
    qn = connection.ops.quote_name
    columns = ", ".join(qn(f.column) for f in [opts.pk, *fields])
    # wrap_database_errors: a constraint failing inside COPY is Django's IntegrityError, as
    # it is from bulk_create (the broadcast pipeline retries an idempotency race on it).
    with connection.cursor() as cur, connection.wrap_database_errors:
        if ids is None:
            cur.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                [qn(opts.db_table), opts.pk.column, n],
            )
            ids = [row[0] for row in cur.fetchall()]
        raw = cur.cursor  # psycopg 3's own cursor: Django's wrapper has no copy()
        with raw.copy(f"COPY {qn(opts.db_table)} ({columns}) FROM STDIN") as copy:
            for row, new_id in zip(rows, ids, strict=True):
                copy.write_row([new_id, *row])
    return ids


def _getter(field) -> Callable[[Model], object]:
    """How to get ``field``'s database value from an object: ``pre_save`` where the field
    sets the value itself (``auto_now``/``auto_now_add``, as ``bulk_create`` does), else the
    attribute, through ``_value_prep``'s shortcut; a field without one takes Django's whole
    path (``pre_save`` + ``get_db_prep_save``)."""
    shortcut = _shortcut(field)
    if shortcut is None:
        return lambda obj: field.get_db_prep_save(field.pre_save(obj, True), connection)
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return lambda obj: shortcut(field.pre_save(obj, True))
    attname = field.attname
    return lambda obj: shortcut(getattr(obj, attname))


def _value_prep(field) -> Callable[[object], object]:
    """A Python value's database value for ``field`` (``_shortcut``, else Django's
    ``get_db_prep_save``)."""
    shortcut = _shortcut(field)
    if shortcut is None:
        return lambda value: field.get_db_prep_save(value, connection)
    return shortcut


def _shortcut(field) -> Callable[[object], object] | None:
    """The shortcut to a value's database value for the field types whose generic path
    (``get_db_prep_save``) dominated the profile: aware datetimes, foreign key ids, JSON as
    text, plain strings and numbers; a value they do not expect still takes Django's path.
    None for other fields."""

    def generic(value):
        return field.get_db_prep_save(value, connection)

    if isinstance(field, ForeignKey):
        return lambda value: value
    if isinstance(field, DateTimeField):

        def moment(value):
            if value is None or (isinstance(value, datetime) and value.tzinfo is not None):
                return value
            return generic(value)

        return moment
    if isinstance(field, JSONField) and field.encoder is None:

        def document(value):
            if value is None and field.null:
                return None
            try:
                return orjson.dumps(value).decode()
            except TypeError:  # beyond orjson (e.g. integers past 64 bits)
                return generic(value)

        return document
    plain_types = next((t for cls, t in PLAIN_TYPES.items() if isinstance(field, cls)), None)
    if plain_types is not None:

        def plain(value):
            # anything else (an enum member, a float for an integer, a lazy string, None)
            # takes Django's path
            return value if type(value) in plain_types else generic(value)

        return plain
    return None
