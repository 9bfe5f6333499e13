"""config.postgresql: Django's backend reading timestamps with psycopg's C loader."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.conf import settings
from django.db import connection
from psycopg.pq import Format
from psycopg_binary import _psycopg

from identity.actions import do_create_worker
from identity.models import Worker

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(not settings.IS_POSTGRES, reason="the backend of PostgreSQL URLs"),
]


def _loader_class(cursor):
    oid = cursor.connection.adapters.types["timestamptz"].oid
    return cursor.adapters.get_loader(oid, Format.TEXT)


def test_a_postgresql_url_runs_this_backend():
    assert settings.DATABASES["default"]["ENGINE"] == "config.postgresql"


def test_plain_cursors_read_timestamps_with_the_c_loader():
    """Django's own loader is Python (psycopg's ``load`` then ``replace``): ~5x the CPU."""
    with connection.cursor() as cur:
        assert _loader_class(cur.cursor) is _psycopg.TimestamptzLoader


def test_timestamps_read_the_same_as_djangos_loader():
    """Aware, in UTC with ``datetime.timezone.utc``, to the microsecond, through the ORM and
    raw SQL alike; a named cursor (``iterator()``) keeps Django's loader and agrees."""
    moments = [
        datetime(2026, 12, 2, 13, 30, 5, 123456, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(2038, 1, 19, 3, 14, 8, 1, tzinfo=UTC),
    ]
    for i, moment in enumerate(moments):
        worker, _ = do_create_worker(f"clock-{i}")
        Worker.objects.filter(pk=worker.pk).update(created_at=moment)
    names = [f"clock-{i}" for i in range(len(moments))]
    ordered = Worker.objects.filter(name__in=names).order_by("name")
    through_orm = list(ordered.values_list("created_at", flat=True))
    with connection.cursor() as cur:
        cur.execute(
            "SELECT created_at FROM workers_worker WHERE name = ANY(%s) ORDER BY name", [names]
        )
        through_sql = [row[0] for row in cur.fetchall()]
    named = list(ordered.values_list("created_at", flat=True).iterator(chunk_size=2))
    assert through_orm == through_sql == named == moments
    assert all(value.tzinfo is UTC for value in through_orm + through_sql + named)
    assert [v.isoformat() for v in through_sql] == [m.isoformat() for m in moments]
