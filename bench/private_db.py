"""The private PostgreSQL database a benchmark runs in: created under a name of its own,
dropped at the end with any connection still on it. One rule for every bench script
(``python -m bench``, ``bench.profile``, ``bench.server_choice``, ``bench.lock_curve``,
``bench.broadcast_actions``), so none leaves a database behind."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit


def database_url(base: str, dbname: str) -> str:
    """``base`` (a server URL, with or without a database path) pointing at ``dbname``."""
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, ""))


@contextmanager
def private_database(
    pg_url: str, prefix: str, *, keep: bool = False, announce: bool = False
) -> Iterator[str]:
    """Create ``<prefix>_<pid>`` on the server ``pg_url`` names and yield its URL; at the end
    close this process's Django connections and drop it (``keep``: leave it, and say so).
    ``announce`` prints ``database <name>`` first (the bench tests check it is gone after)."""
    import psycopg

    dbname = f"{prefix}_{os.getpid()}"
    admin_url = database_url(pg_url, "postgres")
    if announce:
        print(f"database {dbname}", flush=True)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    try:
        yield database_url(pg_url, dbname)
    finally:
        _close_django_connections()
        if keep:
            print(f"kept database {dbname}")
        else:
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def _close_django_connections() -> None:
    from django.apps import apps

    if apps.ready:
        from django.db import connections

        connections.close_all()
