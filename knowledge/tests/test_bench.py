"""``python -m bench`` runs end to end at a tiny size and prints its table.

The bench needs PostgreSQL (its own database, created and dropped) and Redis; it runs in
the PostgreSQL + Redis leg of ``make test``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not (settings.IS_POSTGRES and settings.REDIS_URL), reason="the bench runs on PostgreSQL + Redis"
)


def test_bench_prints_the_table_and_drops_its_database():
    db = settings.DATABASES["default"]
    pg_url = f"postgres://{db['USER'] or 'root'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")
    }
    port = 8390 + os.getpid() % 8
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--rows",
            "300",
            "--clients",
            "2",
            "--servers",
            "1",
            "--requests",
            "2",
            "--naive-requests",
            "1",
            "--bulk-size",
            "20",
            "--bulk-batches",
            "1",
            "--events",
            "50",
            "--port",
            str(port),
            "--pg-url",
            pg_url,
            "--redis-url",
            settings.REDIS_URL,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    text = out.stdout
    assert "Knowledge Exchange bench: 300 items" in text
    for op in (
        "query: one type + min_freshness",
        "query: worker's relevant",
        "broadcast (single)",
        "broadcast (bulk of 20)",
        "inbox receive",
        "events?since= catch-up",
        "cached query:",
    ):
        assert op in text, op
    assert "ERRORS" not in text
    row = next(line for line in text.splitlines() if line.startswith("query: 3 types by freshness"))
    assert len(re.findall(r"\d+\.\d+", row)) >= 6  # median, p95, p99, server times, ratios
    dbname = re.search(r"database (kx_bench_\d+)", text).group(1)
    import psycopg

    with psycopg.connect(pg_url + "/postgres") as conn:
        assert (
            conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone()
            is None
        )


def _dropped(pg_url: str, dbname: str) -> bool:
    import psycopg

    with psycopg.connect(pg_url + "/postgres") as conn:
        return (
            conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone()
            is None
        )


def _pg_url() -> str:
    db = settings.DATABASES["default"]
    return f"postgres://{db['USER'] or 'root'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"


def _bench_env() -> dict:
    return {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "KE_EVENT_ORDERING")
    }


def test_lock_curve_compares_both_orderings_and_drops_its_database():
    """``make bench-lock`` at a tiny size: a row per client count with both modes."""
    pg_url = _pg_url()
    args = ["--clients", "1,2", "--total", "4", "--reps", "1", "--pg-url", pg_url + "/postgres"]
    out = subprocess.run(
        [sys.executable, "bench/lock_curve.py", *args],
        cwd=ROOT,
        env=_bench_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    rows = [line for line in out.stdout.splitlines() if re.match(r"\s+[12] \|", line)]
    assert len(rows) == 2 and all(line.rstrip().endswith("x") for line in rows), out.stdout
    assert _dropped(pg_url, re.search(r"database (kx_lockbench_\d+)", out.stdout).group(1))


def test_server_choice_measures_daphne_and_uvicorn_and_drops_its_database():
    """``make bench-servers`` at a tiny size: every operation on both servers, no errors."""
    pg_url = _pg_url()
    port = 8490 + os.getpid() % 8 * 20
    out = subprocess.run(
        [
            sys.executable,
            "bench/server_choice.py",
            *("--rows", "200", "--clients", "2", "--servers", "1", "--requests", "2"),
            *("--reps", "1", "--port", str(port), "--pg-url", pg_url),
            *("--redis-url", settings.REDIS_URL),
        ],
        cwd=ROOT,
        env=_bench_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "errors" not in out.stdout
    for op in ("query: one type + freshness", "broadcast (single)", "GET types"):
        row = next(line for line in out.stdout.splitlines() if line.startswith(op))
        assert len(re.findall(r"\d+\.\d+", row)) == 5, row  # 2 x (P50, P95) and the ratio
    assert _dropped(pg_url, re.search(r"database (kx_servers_\d+)", out.stdout).group(1))
