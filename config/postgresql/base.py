"""Django's PostgreSQL backend, reading ``timestamptz`` columns with psycopg's C loader.
ENGINE ``config.postgresql`` (config/settings.py sets it for every PostgreSQL URL).

Django loads ``timestamptz`` through its own loader, a Python subclass of psycopg's
(``psycopg_any.BaseTzLoader``: psycopg's ``load`` in Python, then ``replace(tzinfo=...)``),
so the C loader of psycopg's binary build is never used: ~4-7 µs per value, and a query page
of 50 items carries 150 of them (0.8-1.2 ms of a ~3 ms page; 0.18 ms with the C loader,
docs/performance.md, "One type by freshness without the ORM"). When the connection's time
zone is UTC (``USE_TZ`` and no database ``TIME_ZONE``: Django then sets the session's
``TimeZone`` to UTC) the C loader answers the same values with the same ``tzinfo``
(``datetime.timezone.utc``), so each plain cursor gets it. Named (server-side) cursors and
any other time zone keep Django's loader.

Django checks the connection's loader for a ``timezone`` attribute on every cursor, which the
C class does not have, so the loader is registered per cursor (a copy-on-write of the
cursor's loader map: ~5 µs) rather than on the connection.
"""

from __future__ import annotations

from datetime import UTC

from django.db.backends.postgresql import base
from psycopg.types.datetime import TimestamptzLoader  # registering it installs its C class


class DatabaseWrapper(base.DatabaseWrapper):
    def create_cursor(self, name=None):
        cursor = super().create_cursor(name)
        if name is None and self.timezone is UTC:
            cursor.adapters.register_loader("timestamptz", TimestamptzLoader)
        return cursor
