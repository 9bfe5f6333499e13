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

from django.db import connection
from django.db.models import Model

#: Below this many rows ``bulk_create`` is as fast (COPY costs two round trips).
MIN_ROWS = 20


def copy_insert(model: type[Model], objs: list[Model]) -> None:
    """Insert ``objs`` (new instances of ``model``) and set their primary keys."""
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
    # wrap_database_errors: a constraint failing inside COPY is Django's IntegrityError, as
    # it is from bulk_create (the broadcast pipeline retries an idempotency race on it).
    with connection.cursor() as cur, connection.wrap_database_errors:
        cur.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [qn(opts.db_table), pk.column, len(objs)],
        )
        ids = [row[0] for row in cur.fetchall()]
        raw = cur.cursor  # psycopg 3's own cursor: Django's wrapper has no copy()
        with raw.copy(f"COPY {qn(opts.db_table)} ({columns}) FROM STDIN") as copy:
            for obj, new_id in zip(objs, ids, strict=True):
                setattr(obj, pk.attname, new_id)
                copy.write_row(
                    [new_id]
                    + [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]
                )
    for obj in objs:
        obj._state.adding = False
        obj._state.db = connection.alias
