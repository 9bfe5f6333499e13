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

from collections.abc import Callable
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
    opts = model._meta
    pk = opts.pk
    fields = [f for f in opts.concrete_fields if f is not pk]
    qn = connection.ops.quote_name
    columns = ", ".join(qn(f.column) for f in [pk, *fields])
    preps = [_prep(f) for f in fields]
    # wrap_database_errors: a constraint failing inside COPY is Django's IntegrityError, as
    # it is from bulk_create (the broadcast pipeline retries an idempotency race on it).
    with connection.cursor() as cur, connection.wrap_database_errors:
        ids = [getattr(obj, pk.attname) for obj in objs]
        if None in ids:
            cur.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                [qn(opts.db_table), pk.column, len(objs)],
            )
            ids = [row[0] for row in cur.fetchall()]
        raw = cur.cursor  # psycopg 3's own cursor: Django's wrapper has no copy()
        with raw.copy(f"COPY {qn(opts.db_table)} ({columns}) FROM STDIN") as copy:
            for obj, new_id in zip(objs, ids, strict=True):
                setattr(obj, pk.attname, new_id)
                copy.write_row([new_id, *(prep(obj) for prep in preps)])
    for obj in objs:
        obj._state.adding = False
        obj._state.db = connection.alias


def field_preps(model: type[Model]) -> list[tuple[object, Callable[[Model], object]]]:
    """(field, how to get its database value from an object) for every concrete field of
    ``model`` but the primary key, as ``copy_insert`` writes them (for another statement
    that writes a row by hand: the event log's single-event insert)."""
    pk = model._meta.pk
    return [(f, _prep(f)) for f in model._meta.concrete_fields if f is not pk]


def _prep(field) -> Callable[[Model], object]:
    """How to get ``field``'s database value from an object: Django's ``pre_save`` +
    ``get_db_prep_save``, with shortcuts for the types whose generic path dominated the
    profile (aware datetimes, foreign key ids, JSON as text; anything unusual still takes
    Django's path)."""

    def generic(obj):
        return field.get_db_prep_save(field.pre_save(obj, True), connection)

    if isinstance(field, ForeignKey):
        return lambda obj: getattr(obj, field.attname)
    if isinstance(field, DateTimeField):
        stamped = field.auto_now or field.auto_now_add

        def moment(obj):
            # auto_now(_add): pre_save sets the object's value (now), as bulk_create does
            value = field.pre_save(obj, True) if stamped else getattr(obj, field.attname)
            if value is None or (isinstance(value, datetime) and value.tzinfo is not None):
                return value
            return generic(obj)

        return moment
    if isinstance(field, JSONField) and field.encoder is None:

        def document(obj):
            value = getattr(obj, field.attname)
            if value is None and field.null:
                return None
            try:
                return orjson.dumps(value).decode()
            except TypeError:  # beyond orjson (e.g. integers past 64 bits)
                return generic(obj)

        return document
    plain_types = next((t for cls, t in PLAIN_TYPES.items() if isinstance(field, cls)), None)
    if plain_types is not None:

        def plain(obj):
            # anything else (an enum member, a float for an integer, a lazy string, None)
            # takes Django's path
            value = getattr(obj, field.attname)
            return value if type(value) in plain_types else generic(obj)

        return plain
    return generic
