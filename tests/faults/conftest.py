"""Fixtures for fault tests: every one of them runs real processes against private services."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.faults.services import ROOT, PgCluster, RedisServer, service_env


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


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    path = tmp_path_factory.mktemp("kx-sqlite") / "template.sqlite3"
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env=service_env(SQLITE_PATH=str(path)),
        check=True,
        timeout=300,
    )
    return path


@pytest.fixture
def sqlite_env(sqlite_template, tmp_path):
    """The environment of a process on a fresh migrated embedded database (a private file)."""
    path = tmp_path / "kx.sqlite3"
    shutil.copy(sqlite_template, path)
    env = service_env(SQLITE_PATH=str(path))
    env["KX_TEST_SQLITE"] = str(path)
    return env
