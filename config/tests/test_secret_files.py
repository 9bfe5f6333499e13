"""Issue 10, finding 8: the embedded secret key and SQLite database (sessions inside) were
created 0644, readable by every user of the machine; now 0600 whatever the umask. And a
service that answers to real host names with DEBUG off refuses to start without a secret key.
Each case starts a real process (``manage.py``) with a permissive umask."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def manage(*args: str, tmp: Path, **env: str) -> subprocess.CompletedProcess:
    base = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "DJANGO_SECRET_KEY",
            "DATABASE_URL",
            "REDIS_URL",
            "DJANGO_ALLOWED_HOSTS",
            "DJANGO_DEBUG",
            "DJANGO_REQUIRE_SECRET_KEY",
            "DJANGO_ALLOW_GENERATED_SECRET_KEY",
        )
    }
    base.update(
        {
            "KE_SECRET_KEY_FILE": str(tmp / ".secret_key"),
            "SQLITE_PATH": str(tmp / "db.sqlite3"),
            "DJANGO_SETTINGS_MODULE": "config.settings",
            **env,
        }
    )
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.umask(0o022),
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_secret_key_and_database_are_created_owner_only(tmp_path):
    result = manage("migrate", "--noinput", "-v0", tmp=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    key, db = tmp_path / ".secret_key", tmp_path / "db.sqlite3"
    assert len(key.read_text().strip()) >= 50
    assert mode(key) == 0o600
    assert mode(db) == 0o600 and db.stat().st_size > 0
    for companion in tmp_path.glob("db.sqlite3-*"):  # SQLite's -wal / -shm follow the database
        assert mode(companion) == 0o600, companion
    # The key is stable across starts.
    before = key.read_text()
    assert manage("check", tmp=tmp_path).returncode == 0
    assert key.read_text() == before


def test_files_an_older_version_left_readable_are_tightened(tmp_path):
    key, db = tmp_path / ".secret_key", tmp_path / "db.sqlite3"
    key.write_text("x" * 60)
    db.touch()
    os.chmod(key, 0o644)
    os.chmod(db, 0o644)
    result = manage("migrate", "--noinput", "-v0", tmp=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert mode(key) == 0o600 and mode(db) == 0o600
    assert key.read_text() == "x" * 60


@pytest.mark.parametrize(
    "env,starts",
    [
        ({"DJANGO_ALLOWED_HOSTS": "kx.example.com"}, False),
        (
            {"DJANGO_ALLOWED_HOSTS": "kx.example.com", "DJANGO_ALLOW_GENERATED_SECRET_KEY": "true"},
            True,
        ),
        ({"DJANGO_ALLOWED_HOSTS": "kx.example.com", "DJANGO_DEBUG": "true"}, True),
        ({"DJANGO_REQUIRE_SECRET_KEY": "true"}, False),
    ],
)
def test_a_secret_key_is_required_when_debug_is_off_for_real_hosts(tmp_path, env, starts):
    result = manage("check", tmp=tmp_path, **env)
    if starts:
        assert result.returncode == 0, result.stderr[-2000:]
    else:
        assert result.returncode != 0
        assert "DJANGO_SECRET_KEY must be set" in result.stderr
        assert not (tmp_path / ".secret_key").exists()


def test_many_threads_opening_a_new_database_at_once_all_succeed(tmp_path):
    """The first requests of a fresh server open their connections at the same moment (a
    burst of 2,000 requests on a fresh database once got two 500s from this race)."""
    import threading

    from config.files import private_sqlite

    errors: list[Exception] = []
    for round_ in range(30):
        name = str(tmp_path / f"fresh-{round_}.sqlite3")
        barrier = threading.Barrier(16)

        def first_connection(name=name, barrier=barrier):
            barrier.wait()
            try:
                private_sqlite(name)
            except Exception as exc:  # what a request would have turned into a 500
                errors.append(exc)

        threads = [threading.Thread(target=first_connection) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert mode(Path(name)) == 0o600
    assert errors == []
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary files left
