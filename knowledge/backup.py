"""Backup and restore of the configured database (``manage.py backup`` / ``manage.py restore``).

* PostgreSQL: ``pg_dump --format=custom`` and ``pg_restore --clean --single-transaction``
  (readers see the old database or the new one, never half of each).
* Embedded (SQLite): SQLite's online backup API, both ways; safe while the server runs.

After a restore the event log gets a new ``epoch`` (``do_reset_event_log``) and its horizon
and sequence move past the highest seq the database had handed out before the restore: every
consumer (WebSocket, ``GET events``, inboxes, the SDK) that saw anything of the old log is
told ``recovered: false`` and re-syncs, and no new event can reuse a seq a client already saw.
Idempotency records are restored with their items, so a keyed retry of a broadcast that the
backup holds answers 200 with that item instead of applying twice; one the restore lost is
applied once again.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

from django.db import connection, connections, transaction
from django.db.models import Max

from knowledge.actions import do_reset_event_log
from knowledge.models import Event, LogState


class BackupError(Exception):
    pass


def _pg_env_args(settings_dict: dict) -> tuple[dict, list[str]]:
    env = dict(os.environ)
    if settings_dict.get("PASSWORD"):
        env["PGPASSWORD"] = str(settings_dict["PASSWORD"])
    args = []
    for flag, key in (("--host", "HOST"), ("--port", "PORT"), ("--username", "USER")):
        if settings_dict.get(key):
            args += [flag, str(settings_dict[key])]
    return env, args


def _tool(name: str) -> str:
    """The PostgreSQL client tool matching the server's major version when installed."""
    major = connection.pg_version // 10000 if connection.vendor == "postgresql" else None
    candidate = Path(f"/usr/lib/postgresql/{major}/bin/{name}")
    if major and candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise BackupError(f"{name} not found (install the PostgreSQL client tools)")
    return found


def backup_database(path: str | Path) -> Path:
    """Write a consistent copy of the whole database to ``path``."""
    path = Path(path)
    db = connections["default"]
    if db.vendor == "postgresql":
        db.ensure_connection()
        env, args = _pg_env_args(db.settings_dict)
        cmd = [
            _tool("pg_dump"),
            "--format=custom",
            "--no-owner",
            "--file",
            str(path),
            *args,
            db.settings_dict["NAME"],
        ]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode:
            raise BackupError(f"pg_dump failed: {done.stderr.strip()}")
    elif db.vendor == "sqlite":
        db.ensure_connection()
        tmp = path.with_name(path.name + ".partial")
        target = sqlite3.connect(tmp)
        try:
            db.connection.backup(target)  # the online backup API: a consistent snapshot
        finally:
            target.close()
        tmp.replace(path)
    else:
        raise BackupError(f"no backup for the {db.vendor} backend")
    path.chmod(0o600)  # tokens' hashes and everything else: owner only
    return path


def _highest_seq_handed_out() -> int:
    """What the live database has given out so far (events may have been pruned)."""
    try:
        top = Event.objects.aggregate(top=Max("seq"))["top"] or 0
        pruned = LogState.objects.filter(id=1).values_list("pruned_through", flat=True).first()
        return max(top, pruned or 0)
    except Exception:  # no schema yet (a fresh database): nothing was handed out
        return 0


def restore_database(path: str | Path) -> LogState:
    """Replace the database's contents with the backup at ``path``; start a new epoch."""
    path = Path(path)
    if not path.is_file():
        raise BackupError(f"{path}: no such backup file")
    db = connections["default"]
    previous_top = _highest_seq_handed_out()
    if db.vendor == "postgresql":
        env, args = _pg_env_args(db.settings_dict)
        db.close()
        cmd = [
            _tool("pg_restore"),
            "--clean",
            "--if-exists",
            "--no-owner",
            "--single-transaction",
            "--exit-on-error",
            *args,
            "--dbname",
            db.settings_dict["NAME"],
            str(path),
        ]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode:
            raise BackupError(f"pg_restore failed: {done.stderr.strip()}")
    elif db.vendor == "sqlite":
        source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            db.ensure_connection()
            source.backup(db.connection)  # page by page into the live file, one transaction
        finally:
            source.close()
        db.close()
    else:
        raise BackupError(f"no restore for the {db.vendor} backend")
    return start_epoch_after_restore(previous_top)


def start_epoch_after_restore(previous_top: int) -> LogState:
    """A new epoch whose horizon and sequence are past ``previous_top``."""
    with transaction.atomic():
        do_reset_event_log(keep_events=True)
        state = LogState.objects.select_for_update().get(id=1)
        horizon = max(state.pruned_through, previous_top)
        state.pruned_through = horizon
        state.save(update_fields=["pruned_through"])
        _advance_sequence(horizon)
    return state


def _advance_sequence(past: int) -> None:
    table = Event._meta.db_table
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute(
                "SELECT setval(pg_get_serial_sequence(%s, 'seq'), "
                "GREATEST(%s, (SELECT COALESCE(MAX(seq), 0) FROM "
                + connection.ops.quote_name(table)
                + ")))",
                [table, past],
            )
        else:
            cur.execute("SELECT seq FROM sqlite_sequence WHERE name = %s", [table])
            row = cur.fetchone()
            if row is None:
                cur.execute(
                    "INSERT INTO sqlite_sequence (name, seq) VALUES (%s, %s)", [table, past]
                )
            elif row[0] < past:
                cur.execute("UPDATE sqlite_sequence SET seq = %s WHERE name = %s", [past, table])
