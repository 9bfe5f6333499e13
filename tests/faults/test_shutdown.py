"""SIGTERM stops every background process of the Procfile within 5 s, with no half-write:
the workers (``run_workers``), the alert checker (``check_alerts``), the pruner (``prune``).
Each test starts the real process, waits until it is working, sends SIGTERM and waits for its
exit with a bounded timeout."""

from __future__ import annotations

import re
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.faults.figures import report
from tests.faults.services import ProjectProcess, wait_until
from workers.engine.tests.conftest import RepoBuilder
from workers.engine.tests.test_replay import build_history

pytestmark = pytest.mark.faults
STOP_WITHIN = 5  # seconds (DESIGN.md §10)


def rows(db: str, sql: str) -> list[tuple]:
    with sqlite3.connect(db, timeout=30) as conn:
        return conn.execute(sql).fetchall()


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def stop_and_time(proc: ProjectProcess, name: str) -> int:
    import time

    start = time.monotonic()
    try:
        code = proc.terminate(timeout=STOP_WITHIN)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{name} did not exit within {STOP_WITHIN}s of SIGTERM:\n{proc.log()}")
    report(f"sigterm_exit_s[{name}]", time.monotonic() - start)
    return code


def test_workers_stop_within_five_seconds_and_leave_no_half_write(sqlite_env, tmp_path):
    repo = RepoBuilder(tmp_path / "repo")
    build_history(repo, commits=6)
    db = sqlite_env["KX_TEST_SQLITE"]
    proc = ProjectProcess.manage(
        "run_workers", "--all", "--repo", str(repo.path), "--interval", "0.2", env=sqlite_env
    ).start()
    try:
        wait_until(
            lambda: rows(db, "SELECT count(*) FROM knowledge_knowledgeitem")[0][0] > 0,
            90,
            "the workers to broadcast",
        )
        kids = wait_until(
            lambda: len(children_of(proc.proc.pid)) == 5 and children_of(proc.proc.pid),
            30,
            "five worker processes",
        )

        assert stop_and_time(proc, "run_workers") == 0
    finally:
        proc.cleanup()
    assert "workers stopped" in proc.log()
    assert not [pid for pid in kids if Path(f"/proc/{pid}").exists()], (
        "a worker outlived its runner"
    )
    # Every item has the event written in its transaction, every broadcast event its item.
    assert rows(
        db,
        """SELECT count(*) FROM knowledge_knowledgeitem i WHERE NOT EXISTS
                       (SELECT 1 FROM knowledge_event e WHERE e.item_id = i.id
                        AND e.kind = 'knowledge_broadcast')""",
    ) == [(0,)]
    assert rows(
        db,
        """SELECT count(*) FROM knowledge_event e WHERE e.kind = 'knowledge_broadcast'
                       AND NOT EXISTS (SELECT 1 FROM knowledge_knowledgeitem i
                                       WHERE i.id = e.item_id)""",
    ) == [(0,)]
    states = dict(rows(db, "SELECT name, json_extract(state, '$.status') FROM workers_worker"))
    # Each worker stopped cleanly ("stopped"), or was still starting when SIGTERM came and had
    # written nothing yet (None); "running" would mean it was killed after a cycle.
    assert set(states.values()) <= {"stopped", None}, states
    assert "stopped" in states.values()


def test_alert_checker_stops_within_five_seconds(sqlite_env):
    proc = ProjectProcess.manage("check_alerts", "--interval", "30", env=sqlite_env).start()
    try:
        wait_until(lambda: "alert checker running" in proc.log(), 60, "the first pass")
        assert stop_and_time(proc, "check_alerts") == 0
    finally:
        proc.cleanup()
    assert "alert checker stopped" in proc.log()


def _old_events(db: str, count: int) -> None:
    old = datetime.now(UTC) - timedelta(days=90)
    with sqlite3.connect(db, timeout=30) as conn:
        conn.execute(
            """WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
               INSERT INTO knowledge_event (kind, knowledge_type, source, item_id, is_targeted,
                                            targets, data, created_at)
               SELECT 'knowledge_broadcast', 'risk_pattern', 'think', NULL, 0, '[]', '{}',
                      strftime('%Y-%m-%d %H:%M:%f', ?, '+' || i || ' seconds') FROM n""",
            [count, old.strftime("%Y-%m-%d %H:%M:%S")],
        )


def test_pruner_stops_between_batches_within_five_seconds(sqlite_env):
    db = sqlite_env["KX_TEST_SQLITE"]
    _old_events(db, 40_000)
    proc = ProjectProcess.manage("prune", "--interval", "60", "--batch", "200", env=sqlite_env)
    proc.start()
    try:
        wait_until(lambda: "pruned" in proc.log(), 60, "the pruner to delete a batch")
        assert stop_and_time(proc, "prune") == 0
    finally:
        proc.cleanup()
    log = proc.log()
    assert "pruner stopped" in log
    deleted = sum(int(n) for n in re.findall(r"pruned (\d+) events", log))
    left = rows(db, "SELECT count(*), min(seq) FROM knowledge_event")[0]
    horizon = rows(db, "SELECT pruned_through FROM knowledge_logstate WHERE id = 1")[0][0]
    assert 0 < deleted < 40_000, "it stopped in the middle, not after the work was done"
    # Whole batches only: what was reported deleted is gone, the horizon is exactly there.
    assert left == (40_000 - deleted, deleted + 1)
    assert horizon == deleted
