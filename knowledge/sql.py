"""Small helpers for the few statements written by hand on the hot paths (the broadcast's
idempotency lookup, own-items lock and conflict detection's busy check): there, building
the query with the ORM cost more CPU than running it (docs/performance.md, "Single
broadcast")."""

from __future__ import annotations

from django.db import connection


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
