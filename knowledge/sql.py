"""Small helpers for the few statements written by hand on the hot paths (the broadcast's
idempotency lookup, own-items lock, event insert and conflict detection's busy check):
there, building the query with the ORM cost more CPU than running it, and each round trip
to the database costs a wake-up on both sides (docs/performance.md, "Single broadcast")."""

from __future__ import annotations

import functools

from django.db import connection, transaction


def quoted(model) -> str:
    """``model``'s table name, quoted for this connection."""
    return connection.ops.quote_name(model._meta.db_table)


def sql_in(values: list) -> tuple[str, list]:
    """``IN values`` as SQL and its parameters: one array on PostgreSQL (one placeholder
    whatever the length), one placeholder per value elsewhere. An empty list matches nothing."""
    if connection.vendor == "postgresql":
        return "= ANY(%s)", [list(values)]
    if not values:
        return "IN (NULL)", []
    return f"IN ({', '.join(['%s'] * len(values))})", list(values)


def execute_together(cur, statements: list[tuple[str, list]], rows_of: int = -1) -> list:
    """Run ``statements`` (SQL, params) in order on ``cur``; return the rows of the one at
    index ``rows_of`` (a statement that returns rows).

    On PostgreSQL with client-side binding (Django's default with psycopg 3) they go in one
    round trip, as one string of statements. Each still runs as it would alone: in READ
    COMMITTED every statement of the string takes its own snapshot when it starts, so a
    statement after a lock sees what the lock's previous holder committed
    (``knowledge/tests/test_broadcast_lean.py`` proves it), and the first one that fails
    stops the rest and raises. Elsewhere (SQLite, server-side binding) one execute each."""
    [rows] = execute_together_reading(cur, statements, [rows_of])
    return rows


def execute_together_reading(
    cur, statements: list[tuple[str, list]], rows_of: list[int]
) -> list[list]:
    """``execute_together``, returning the rows of each statement at the indexes
    ``rows_of`` (each one that returns rows), in that order."""
    wanted = {index % len(statements) for index in rows_of}
    found: dict[int, list] = {}
    if len(statements) > 1 and one_round_trip():
        cur.execute(
            ";\n".join(sql for sql, _ in statements),
            [p for _, params in statements for p in params],
        )
        for index in range(max(wanted) + 1):  # psycopg 3 starts at the first statement's
            if index:
                cur.nextset()
            if index in wanted:
                found[index] = cur.fetchall()
    else:
        for index, (sql, params) in enumerate(statements):
            cur.execute(sql, params)
            if index in wanted:
                found[index] = cur.fetchall()
    return [found[index % len(statements)] for index in rows_of]


def one_round_trip() -> bool:
    """Whether ``execute_together`` sends its statements in one round trip here."""
    if connection.vendor != "postgresql":
        return False
    return _client_binding(bool(connection.settings_dict["OPTIONS"].get("server_side_binding")))


@functools.cache
def _client_binding(server_side: bool) -> bool:
    # psycopg 2 keeps only the last result of a string; psycopg 3 binds server-side only
    # when asked to, and then refuses several statements with parameters.
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return is_psycopg3 and not server_side


def insert_statement(obj, pk_sql: str = "", pk_params: tuple = ()) -> tuple[str, list]:
    """A one-row ``INSERT ... RETURNING <pk>`` of the new instance ``obj`` (SQL, params),
    each field's value prepared as ``save()`` prepares it (``pre_save``,
    ``get_db_prep_save``); the primary key from the table's default, or from the SQL
    expression ``pk_sql`` (with ``pk_params``). Without the ORM's statement building, which
    was the costliest statement of a single broadcast (docs/performance.md, "Single
    broadcast: queries per request (2026-12-02)")."""
    sql, fields = _insert_sql(type(obj), pk_sql, connection.vendor)
    values = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]
    return sql, [*pk_params, *values]


@functools.cache
def _insert_sql(model, pk_sql: str, vendor: str) -> tuple[str, tuple]:
    opts = model._meta
    fields = tuple(f for f in opts.concrete_fields if not f.primary_key)
    qn = connection.ops.quote_name
    names = [qn(f.column) for f in fields]
    marks = ["%s"] * len(fields)
    if pk_sql:
        names.insert(0, qn(opts.pk.column))
        marks.insert(0, pk_sql)
    sql = (
        f"INSERT INTO {qn(opts.db_table)} ({', '.join(names)}) VALUES ({', '.join(marks)}) "
        f"RETURNING {qn(opts.pk.column)}"
    )
    return sql, fields


def insert(obj) -> None:
    """``obj.save(force_insert=True)`` for a new row of a model without save() logic or
    signal receivers of its own, in one ``insert_statement`` (where the database returns
    the new key from an INSERT; elsewhere ``save()``)."""
    if not connection.features.can_return_columns_from_insert:
        obj.save(force_insert=True)
        return
    with transaction.mark_for_rollback_on_error(), connection.cursor() as cur:
        cur.execute(*insert_statement(obj))
        [obj.pk] = cur.fetchone()
    obj._state.adding = False
    obj._state.db = connection.alias


def columns(model) -> str:
    """The select list of every concrete column of ``model``, in the order ``instances``
    reads them."""
    return _columns(model, connection.vendor)


@functools.cache
def _columns(model, vendor: str) -> str:
    qn = connection.ops.quote_name
    return ", ".join(qn(f.column) for f in model._meta.concrete_fields)


def instances(model, rows: list) -> list:
    """``rows`` of ``SELECT {columns(model)}`` as model instances, each value converted as
    the ORM converts it (JSON text to Python, ...): what ``Model.objects.raw`` gives, for a
    result read by ``execute_together``."""
    if not rows:
        return []
    convert = _converters(model, connection.vendor)
    names = [f.attname for f in model._meta.concrete_fields]
    out = []
    for row in rows:
        values = list(row)
        for index, field, fns in convert:
            for fn in fns:
                values[index] = fn(values[index], field, connection)
        out.append(model.from_db(connection.alias, names, values))
    return out


@functools.cache
def _converters(model, vendor: str) -> list:
    found = []
    for index, f in enumerate(model._meta.concrete_fields):
        col = f.cached_col
        fns = connection.ops.get_db_converters(col) + f.get_db_converters(connection)
        if fns:
            found.append((index, col, fns))
    return found
