"""The SDK as a new user gets it (issue 15): ``pip install`` of the repository into a fresh
virtualenv, then the quickstart of docs/sdk.md, copied from the doc as it is, against a live
server. Nothing comes from the network: the build runs without isolation and without an index.

The fresh venv has no ``websockets``, so this also shows the live feed's standard-library
fallback (one log line, no traceback)."""

from __future__ import annotations

import importlib.metadata
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import risk_payload
from identity.actions import do_create_worker
from knowledge.models import KnowledgeItem
from knowledge.tests.daphne_server import DaphneServer

ROOT = Path(__file__).resolve().parents[2]


def quickstart_source() -> str:
    """The quickstart block of docs/sdk.md, verbatim (the doc and this test cannot drift)."""
    text = (ROOT / "docs" / "sdk.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    return next(b for b in blocks if b.startswith('"""quickstart.py'))


def checkout_copy(dest: Path) -> Path:
    """The repository as a clone has it (tracked and unignored files, as they are now), so
    the build writes its ``build/`` and ``*.egg-info`` there, not into this checkout."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        source = ROOT / name
        if source.is_file() and not source.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def build_helpers(dest: Path) -> Path:
    """A directory holding only ``wheel`` and ``packaging`` from this environment
    (requirements-dev.txt): Python 3.11's bundled setuptools 65 builds a wheel only with the
    ``wheel`` package, which a fresh venv lacks. Lent to the build, not to the installed SDK."""
    dest.mkdir()
    for name in ("wheel", "packaging"):
        dist = importlib.metadata.distribution(name)
        # The package and its metadata: setuptools finds bdist_wheel by its entry point.
        for top in {f.parts[0] for f in dist.files} - {".."}:  # ".." is bin/
            (dest / top).symlink_to(dist.locate_file(top))
    return dest


def fresh_venv(tmp_path: Path) -> Path:
    """A virtualenv with the SDK installed from the repository; its python."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    helpers = build_helpers(Path(tmp_path / "helpers"))
    done = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            str(checkout_copy(tmp_path / "repo")),
        ],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(helpers), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return python


def lines_of(stream, into: queue.Queue) -> threading.Thread:
    def pump():
        for line in stream:
            into.put(line.rstrip("\n"))
        into.put(None)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread


def wait_for_line(lines: queue.Queue, seen: list[str], pattern: str, timeout: float = 30):
    """Read stdout lines until one contains ``pattern`` (guard: ``timeout`` seconds)."""
    while True:
        line = lines.get(timeout=timeout)
        assert line is not None, f"the worker exited before printing {pattern!r}: {seen}"
        seen.append(line)
        if pattern in line:
            return


@pytest.mark.django_db(transaction=True)
def test_pip_install_into_a_fresh_venv_then_the_docs_quickstart_against_a_live_server(
    tmp_path, think
):
    python = fresh_venv(tmp_path)
    # Only the SDK: nothing of the server, and not the optional extra.
    probe = subprocess.run(
        [
            str(python),
            "-I",
            "-c",
            "import importlib.util as u, kx_sdk; print(kx_sdk.__version__, "
            "[m for m in ('workers', 'config', 'django', 'websockets') if u.find_spec(m)])",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert re.fullmatch(r"\d+\.\d+\.\d+ \[\]\n", probe.stdout), probe.stdout

    server = DaphneServer().start()
    worker = None
    try:
        _, token = do_create_worker("hello")
        script = tmp_path / "quickstart.py"
        script.write_text(quickstart_source())
        worker = subprocess.Popen(
            [str(python), "-I", str(script)],
            cwd=tmp_path,
            env={
                "PATH": os.environ["PATH"],
                "KE_URL": server.url,
                "KE_TOKEN": token,
                "KE_CYCLES": "2",
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        out: queue.Queue = queue.Queue()
        lines_of(worker.stdout, out)
        seen: list[str] = []
        wait_for_line(out, seen, "following the live feed (polling)")
        # The first cycle is over once its broadcast is stored (the inbox was read before).
        deadline = time.monotonic() + 30
        while not KnowledgeItem.objects.filter(source__name="hello").exists():
            assert time.monotonic() < deadline, f"the first cycle never broadcast: {seen}"
            time.sleep(0.1)
        # Another worker speaks; the interval is a minute, so only the live feed can wake it.
        assert think.broadcast("risk_pattern", risk_payload("heard live")).status_code == 201
        wait_for_line(out, seen, "received from think: heard live")
        assert worker.wait(30) == 0, worker.stderr.read()
        wait_for_line(out, seen, "2 cycles, 1 received, 2 broadcast")
        stderr = worker.stderr.read()
        assert "Traceback" not in stderr, stderr
        fallback = [line for line in stderr.splitlines() if "websockets is not installed" in line]
        assert len(fallback) == 1, stderr  # one line, once
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait(10)
        server.stop()
