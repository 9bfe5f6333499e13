"""The Procfile (`make run`, honcho) runs the background processes below the web process's
CPU priority: on a small machine the workers' bursts must not delay the live feed's fan-out
(docs/performance.md, "Fan-out with the fleet running")."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return {n.strip(): c.strip() for n, _, c in (x.partition(":") for x in lines) if c.strip()}


def nice_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def started_nice(cmd: str, tmp_path: Path) -> int:
    """Start one Procfile command as honcho does (a shell), read the niceness of the Python
    process it runs, stop it."""
    env = {**os.environ, "SQLITE_PATH": str(tmp_path / "p.sqlite3")}
    env.pop("DATABASE_URL", None), env.pop("REDIS_URL", None)
    proc = subprocess.Popen(
        ["bash", "-c", "exec " + cmd],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            argv0 = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")[0]
            if b"python" in argv0:  # exec'd past bash and nice
                return nice_of(proc.pid)
            time.sleep(0.01)
        raise AssertionError(f"{cmd!r} did not start")
    finally:
        proc.kill()
        proc.wait()


def test_background_processes_run_at_a_lower_cpu_priority_than_web(tmp_path):
    processes = procfile()
    assert "web" in processes and "nice" not in processes["web"]
    mine = os.nice(0)
    background = {name: cmd for name, cmd in processes.items() if name != "web"}
    assert set(background) >= {"workers", "alerts", "pruner", "sweep"}
    for name, cmd in background.items():
        # The lowest priority there is (19): at 10 the fleet still cost the live feed's P95
        # ~1.3x (docs/performance.md, "The fleet at nice 19").
        assert started_nice(cmd, tmp_path) >= min(mine + 19, 19), name
