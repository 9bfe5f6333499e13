"""Benchmark of the engine on a real-size Python code base (not a test; run it by hand).

Builds a scratch git repository from Python packages of a source tree (by default this
interpreter's standard library), then:

- ``--commits N`` (default 500): N-1 synthetic commits, each editing 1-3 files (appending,
  changing or removing a small function), so unchanged files can be served from the cache;
- ``--snapshots DIR ...``: instead, one commit per directory, in order (e.g. the standard
  library of successive Python versions: real code evolution).

It reports the cold analysis time of one commit, the per-commit analysis time over the whole
history with a warm cache, and the time of a full replay (both exchange modes) with the Brier
scores. Example::

    python -m workers.engine.bench --workdir /tmp/engine-bench --commits 500
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

from .analysis import Analyzer
from .gitrepo import GitRepo
from .replay import compare

DEFAULT_PACKAGES = (
    "asyncio",
    "email",
    "json",
    "concurrent",
    "importlib",
    "http",
    "urllib",
    "logging",
    "xml",
    "unittest",
    "multiprocessing",
    "sqlite3",
    "wsgiref",
    "idlelib",
    "tkinter",
    "ctypes",
    "argparse.py",
    "typing.py",
    "inspect.py",
)


def _git(path: Path, *args: str, env: dict[str, str]) -> None:
    subprocess.run(
        ["git", "-c", "commit.gpgsign=false", *args],
        cwd=path,
        env=env,
        check=True,
        capture_output=True,
    )


def _env(path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        {
            "GIT_AUTHOR_NAME": "bench",
            "GIT_AUTHOR_EMAIL": "bench@example.org",
            "GIT_COMMITTER_NAME": "bench",
            "GIT_COMMITTER_EMAIL": "bench@example.org",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(path),
        }
    )
    return env


def _commit(path: Path, env: dict[str, str], when: int, message: str) -> None:
    env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = f"@{when} +0000"
    _git(path, "add", "-A", env=env)
    _git(path, "commit", "-q", "--allow-empty", "-m", message, env=env)


def _copy_python(source: Path, packages: list[str], target: Path) -> None:
    for name in packages:
        src = source / name
        files = [src] if src.is_file() else sorted(src.rglob("*.py"))
        for file in files:
            dest = target / file.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, dest)


def build_synthetic(workdir: Path, source: Path, packages: list[str], commits: int) -> Path:
    repo = workdir / "repo"
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    env = _env(workdir)
    _git(repo, "init", "-q", "-b", "main", env=env)
    _copy_python(source, packages, repo)
    when = 1_700_000_000
    _commit(repo, env, when, "import")
    files = sorted(p for p in repo.rglob("*.py") if ".git" not in p.parts)
    rng = random.Random(500)
    for index in range(1, commits):
        for file in rng.sample(files, rng.randint(1, 3)):
            text = file.read_text(encoding="utf-8", errors="surrogateescape")
            marker = "\n\ndef _bench_"
            if marker in text and rng.random() < 0.3:
                text = text[: text.rindex(marker)] + "\n"
            else:
                branches = "".join(
                    f"    if x == {i}:\n        x += {i}\n" for i in range(rng.randint(1, 14))
                )
                text += f"\n\ndef _bench_{index}(x):\n{branches}    return x\n"
            file.write_text(text, encoding="utf-8", errors="surrogateescape")
        when += 3600
        _commit(repo, env, when, f"edit {index}")
    return repo


def build_snapshots(workdir: Path, sources: list[Path], packages: list[str]) -> Path:
    repo = workdir / "repo"
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    env = _env(workdir)
    _git(repo, "init", "-q", "-b", "main", env=env)
    when = 1_500_000_000
    for source in sources:
        for child in repo.iterdir():
            if child.name != ".git":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        _copy_python(source, [p for p in packages if (source / p).exists()], repo)
        when += 365 * 86400
        _commit(repo, env, when, f"snapshot of {source}")
    return repo


def measure(repo_path: Path, *, replay_too: bool = True) -> dict:
    repo = GitRepo(repo_path)
    commits = repo.commits()
    head = commits[-1].sha
    cold = Analyzer()
    started = time.perf_counter()
    snapshot = cold.analyze_commit(repo, head)
    cold_seconds = time.perf_counter() - started
    warm = Analyzer()
    per_commit = []
    for commit in commits:
        started = time.perf_counter()
        warm.analyze_commit(repo, commit.sha)
        per_commit.append(time.perf_counter() - started)
    steady = per_commit[1:] or per_commit
    result: dict[str, Any] = {
        "commits": len(commits),
        "python_files_at_head": snapshot.files,
        "functions_at_head": sum(u.is_function for u in snapshot.units.values()),
        "issues_at_head": len(snapshot.issues),
        "skipped_files_at_head": snapshot.skipped_count,
        "cold_commit_analysis_s": round(cold_seconds, 3),
        "warm_commit_analysis_ms_mean": round(1000 * statistics.mean(steady), 2),
        "warm_commit_analysis_ms_p95": round(
            1000 * sorted(steady)[int(0.95 * (len(steady) - 1))], 2
        ),
        "history_analysis_s": round(sum(per_commit), 2),
        "files_parsed_over_history": warm.stats["parsed"],
    }
    if replay_too:
        started = time.perf_counter()
        result["replay"] = compare(repo)
        result["replay_both_modes_s"] = round(time.perf_counter() - started, 2)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark the worker engine.")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/engine-bench"))
    parser.add_argument("--source", type=Path, default=Path(sysconfig.get_paths()["stdlib"]))
    parser.add_argument("--packages", nargs="*", default=list(DEFAULT_PACKAGES))
    parser.add_argument("--commits", type=int, default=500)
    parser.add_argument("--snapshots", type=Path, nargs="*", default=None)
    parser.add_argument("--no-replay", action="store_true")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.snapshots:
        repo = build_snapshots(args.workdir, args.snapshots, args.packages)
    else:
        repo = build_synthetic(args.workdir, args.source, args.packages, args.commits)
    build_seconds = time.perf_counter() - started
    result = {
        "repo": str(repo),
        "build_s": round(build_seconds, 1),
        **measure(repo, replay_too=not args.no_replay),
    }
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
