"""Fixtures: real git repositories built in ``tmp_path`` (no global git config needed)."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from workers.engine.gitrepo import GitRepo

DAY = 86400
EPOCH = 1_700_000_000


class RepoBuilder:
    """A scratch git repository; every commit is one simulated day after the previous one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.clock = EPOCH
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
            "GIT_AUTHOR_NAME": "Alice",
            "GIT_AUTHOR_EMAIL": "alice@example.org",
            "GIT_COMMITTER_NAME": "Alice",
            "GIT_COMMITTER_EMAIL": "alice@example.org",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(path),
        }
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        result = subprocess.run(
            ["git", "-c", "commit.gpgsign=false", *args],
            cwd=self.path,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.strip()

    def write(self, relpath: str, text: str) -> None:
        target = self.path / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text))

    def delete(self, relpath: str) -> None:
        (self.path / relpath).unlink()

    def commit(self, message: str = "change") -> str:
        self.clock += DAY
        stamp = f"@{self.clock} +0000"
        self.env["GIT_AUTHOR_DATE"] = self.env["GIT_COMMITTER_DATE"] = stamp
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    @property
    def repo(self) -> GitRepo:
        return GitRepo(self.path)


@pytest.fixture
def builder(tmp_path: Path) -> RepoBuilder:
    return RepoBuilder(tmp_path / "repo")
