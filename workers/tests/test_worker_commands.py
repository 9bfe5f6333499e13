"""run_worker, run_workers and replay_history."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from knowledge.models import KnowledgeItem
from workers.models import Project

pytestmark = pytest.mark.django_db(transaction=True)


def test_replay_history_json_report(history_repo):
    out = StringIO()
    call_command(
        "replay_history",
        "--repo",
        str(history_repo.path),
        "--commits",
        "6",
        "--json",
        "--no-progress",
        "--sweep-every",
        "2",
        stdout=out,
    )
    report = json.loads(out.getvalue())
    assert report["commits"] == 6 and report["exchange"] is True and report["failed_cycles"] == 0
    assert report["conflicts"]["sweeps"]["runs"] == 3  # the conflicts sweep every 2 commits
    quality = report["decision_quality"]
    assert set(quality) >= {"brier", "accuracy", "n"} and quality["n"] > 0
    assert 0 <= quality["brier"] <= 1
    assert 0 < report["reception_overhead"]["ratio"] < 1
    assert set(report["workers"]) == {"analysis", "dream", "recall", "think", "learning"}
    assert report["workers"]["analysis"]["broadcast_by_type"]["issue_pattern"] > 0
    assert report["decisions"] and report["outcomes"]


def test_replay_history_text_report_and_refusal_of_a_used_database(history_repo, think):
    out = StringIO()
    call_command(
        "replay_history",
        "--repo",
        str(history_repo.path),
        "--commits",
        "3",
        "--no-progress",
        "--no-exchange",
        stdout=out,
    )
    text = out.getvalue()
    assert (
        "WITHOUT exchange" in text and "decision quality" in text and "reception overhead" in text
    )
    with pytest.raises(CommandError, match="fresh"):
        call_command("replay_history", "--repo", str(history_repo.path), stdout=StringIO())
    with pytest.raises(CommandError, match="no such directory"):
        call_command("replay_history", "--repo", "/nonexistent", stdout=StringIO())


def test_replay_history_compare_on_fresh_databases(history_repo, tmp_path):
    out = StringIO()
    call_command(
        "replay_history",
        "--repo",
        str(history_repo.path),
        "--compare",
        "--db",
        str(tmp_path / "r.sqlite3"),
        "--json",
        "--no-progress",
        stdout=out,
    )
    report = json.loads(out.getvalue())
    assert (
        report["with_exchange"]["items_before"] == report["without_exchange"]["items_before"] == 0
    )
    comparison = report["comparison"]
    # Both modes forecast from the base rate; the exchange adds skill against it.
    assert (
        comparison["with_exchange"]["brier_skill"] > comparison["without_exchange"]["brier_skill"]
    )
    assert comparison["skill_gain"] > 0
    assert comparison["without_exchange"]["base_rate"] == comparison["with_exchange"]["base_rate"]
    assert (tmp_path / "r.sqlite3.exchange").exists() and (
        tmp_path / "r.sqlite3.no-exchange"
    ).exists()
    assert KnowledgeItem.objects.count() == 0  # this database was left alone


def test_run_worker_once_analyses_head(history_repo):
    out = StringIO()
    call_command("run_worker", "analysis", "--repo", str(history_repo.path), "--once", stdout=out)
    assert "analysis: 1 cycles" in out.getvalue() and "0 errors" in out.getvalue()
    head = history_repo.git("rev-parse", "HEAD")
    assert Project.objects.get().last_analysed_commit == head
    assert KnowledgeItem.objects.filter(
        source__name="analysis", knowledge_type="issue_pattern"
    ).exists()
    with pytest.raises(CommandError, match="token"):
        call_command(
            "run_worker",
            "think",
            "--repo",
            str(history_repo.path),
            "--transport",
            "http",
            "--token",
            "",
        )


def test_run_workers_stops_all_five_on_sigterm(history_repo, tmp_path):
    db = tmp_path / "live.sqlite3"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["SQLITE_PATH"] = str(db)
    manage = str(Path(settings.BASE_DIR) / "manage.py")
    subprocess.run([sys.executable, manage, "migrate", "-v0"], env=env, check=True)
    proc = subprocess.Popen(
        [
            sys.executable,
            manage,
            "run_workers",
            "--all",
            "--repo",
            str(history_repo.path),
            "--interval",
            "0.5",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )

    def states():
        with sqlite3.connect(db, timeout=30) as conn:
            rows = conn.execute("select name, state from workers_worker").fetchall()
        return {name: json.loads(state) for name, state in rows}

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        current = states()
        if len(current) == 5 and all(s.get("commits_done", 0) >= 1 for s in current.values()):
            break
        time.sleep(0.3)
    else:
        proc.kill()
        raise AssertionError(f"workers did not all finish a commit: {states()}")
    # The parent ran Django's system checks once; the five children skip them (each run
    # cost ~0.5 CPU-s at every start, docs/performance.md).
    kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    cmdlines = [Path(f"/proc/{kid}/cmdline").read_bytes().split(b"\0") for kid in kids]
    assert len(cmdlines) == 5 and all(b"--skip-checks" in c for c in cmdlines), cmdlines
    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=40)
    assert proc.returncode == 0
    assert "workers stopped" in stdout and "killed" not in stdout
    final = states()
    assert {s["status"] for s in final.values()} == {"stopped"}
    assert all(s["stats"]["errors"] == 0 for s in final.values()), final


def test_registering_a_project_twice_at_once_yields_one(history_repo):
    """Workers starting together register the same checkout at the same moment: whoever loses
    the race gets the winner's project, never an error or a second row."""
    import threading

    from django.db import connection

    from workers.actions import do_register_project

    racers = 6
    barrier = threading.Barrier(racers)
    got: list = []
    errors: list = []

    def register():
        try:
            barrier.wait(10)
            got.append(do_register_project(str(history_repo.path)).pk)
        except Exception as exc:  # reported below with the others
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=register) for _ in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(got) == racers and len(set(got)) == 1
    assert Project.objects.count() == 1
