"""Fixtures for fault tests: every one of them runs real processes against private services."""

from __future__ import annotations

import pytest

from tests.faults.services import PgCluster, RedisServer


@pytest.fixture(scope="session")
def pg_cluster():
    """A private PostgreSQL cluster holding a migrated template database ``kx``."""
    cluster = PgCluster().init().start()
    try:
        cluster.migrate("kx")
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def pg_db(pg_cluster, request):
    """A fresh migrated database on the private cluster (a copy of the template); its URL.
    The cluster is running when the test starts, whatever the previous test did to it."""
    if not pg_cluster.running():
        pg_cluster.start()
    name = "kx_" + request.node.name.lower().replace("[", "_").replace("]", "")[:40]
    url = pg_cluster.clone("kx", name)
    yield url
    if not pg_cluster.running():
        pg_cluster.start()


@pytest.fixture
def redis_server():
    server = RedisServer().start()
    yield server
    server.destroy()
