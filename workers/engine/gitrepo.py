"""Read-only access to a git checkout through the ``git`` command line (no working-tree changes).

Everything is read from the object database by commit sha, so history can be replayed without
checking anything out. Failures raise :class:`GitError` subclasses with git's message.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

_RECORD = "\x1e"
_FIELD = "\x1f"
_BAD_REV_HINTS = (
    "bad revision",
    "unknown revision",
    "not a valid object",
    "bad object",
    "invalid object",
    "not a tree object",
    "ambiguous argument",
    "needed a single revision",
    "bad sha1",
    "not a valid commit",
    "does not have any commits",
)


class GitError(Exception):
    """A git command failed."""


class NotARepositoryError(GitError):
    """The path is not (inside) a git repository."""


class BadRevisionError(GitError):
    """A sha or revision does not name a commit of the repository."""


@dataclass(frozen=True, slots=True)
class Commit:
    sha: str
    timestamp: int  # committer time, unix seconds
    author: str
    subject: str


@dataclass(frozen=True, slots=True)
class FileStats:
    """History of one path up to a commit: churn = number of (non-merge) commits touching it."""

    path: str
    churn: int
    first_time: int
    last_time: int

    def age_days(self, now: float) -> float:
        """Days between the file's first commit and ``now`` (unix seconds), never negative."""
        return max(0.0, (now - self.first_time) / 86400.0)


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({"LC_ALL": "C", "GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0"})
    return env


class GitRepo:
    """The git repository containing ``path`` (work tree or bare). Cheap to create; stateless.

    Paths are always relative to the repository's top level (``ls-tree --full-tree``).
    """

    def __init__(self, path: str | Path, *, git: str = "git") -> None:
        self.path = Path(path)
        self._git = git
        self._env = _clean_env()
        if not self.path.is_dir():
            raise NotARepositoryError(f"{self.path}: no such directory")
        try:
            self._run("rev-parse", "--git-dir")
        except GitError as exc:
            raise NotARepositoryError(f"{self.path}: not a git repository ({exc})") from exc

    def _run(self, *args: str, stdin: bytes | None = None, rev: str | None = None) -> bytes:
        cmd = [self._git, "-c", "core.quotepath=off", *args]
        try:
            proc = subprocess.run(
                cmd, cwd=self.path, input=stdin, capture_output=True, env=self._env, check=False
            )
        except OSError as exc:
            raise GitError(f"cannot run git: {exc}") from exc
        if proc.returncode != 0:
            message = proc.stderr.decode("utf-8", "replace").strip()
            if rev is not None and any(h in message.lower() for h in _BAD_REV_HINTS):
                raise BadRevisionError(f"{rev!r} is not a commit of {self.path}: {message}")
            raise GitError(f"git {' '.join(args[:2])} failed in {self.path}: {message}")
        return proc.stdout

    def resolve(self, rev: str) -> str:
        """Full sha of the commit ``rev`` names; :class:`BadRevisionError` if none."""
        if not rev or rev.startswith("-"):
            raise BadRevisionError(f"{rev!r} is not a revision")
        try:
            out = self._run("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
        except GitError as exc:
            raise BadRevisionError(f"{rev!r} is not a commit of {self.path}") from exc
        return out.decode().strip()

    def commits(
        self, rev: str = "HEAD", *, max_count: int | None = None, first_parent: bool = False
    ) -> list[Commit]:
        """Commits reachable from ``rev``, oldest first; ``max_count`` keeps the newest N.

        An empty repository (no HEAD yet) has no commits: returns ``[]``.
        """
        if rev == "HEAD":
            try:
                self._run("rev-parse", "--verify", "--quiet", "HEAD")
            except GitError:
                return []
        sha = self.resolve(rev)
        args = ["log", "--reverse", f"--format={_RECORD}%H{_FIELD}%ct{_FIELD}%an{_FIELD}%s"]
        if max_count is not None:
            if max_count < 0:
                raise ValueError("max_count must be >= 0")
            args.append(f"--max-count={max_count}")
        if first_parent:
            args.append("--first-parent")
        out = self._run(*args, sha, "--", rev=rev).decode("utf-8", "replace")
        commits = []
        for record in out.split(_RECORD)[1:]:
            full, ct, author, subject = record.rstrip("\n").split(_FIELD, 3)
            commits.append(Commit(full, int(ct), author, subject))
        return commits

    def tree(
        self, sha: str, *, include: Callable[[str], bool] = lambda p: p.endswith(".py")
    ) -> dict[str, str]:
        """``{path: blob sha}`` of regular files at commit ``sha`` accepted by ``include``."""
        self._check_rev(sha)
        out = self._run("ls-tree", "-r", "-z", "--full-tree", sha, rev=sha)
        files = {}
        for entry in out.split(b"\0"):
            if not entry:
                continue
            meta, _, raw_path = entry.partition(b"\t")
            mode, kind, blob = meta.split(b" ")
            path = raw_path.decode("utf-8", "surrogateescape")
            if kind == b"blob" and mode != b"120000" and include(path):
                files[path] = blob.decode()
        return files

    def read_blobs(self, blob_shas: Iterable[str]) -> dict[str, bytes]:
        """Contents of blobs by sha, in one ``git cat-file --batch`` call."""
        wanted = list(dict.fromkeys(blob_shas))
        if not wanted:
            return {}
        out = self._run("cat-file", "--batch", stdin="".join(f"{s}\n" for s in wanted).encode())
        blobs: dict[str, bytes] = {}
        pos = 0
        for sha in wanted:
            eol = out.index(b"\n", pos)
            header = out[pos:eol].split(b" ")
            if len(header) != 3:
                raise GitError(f"blob {sha} not found in {self.path}")
            size = int(header[2])
            blobs[sha] = out[eol + 1 : eol + 1 + size]
            pos = eol + 1 + size + 1
        return blobs

    def read_python_files(self, sha: str) -> dict[str, bytes]:
        """``{path: source bytes}`` of every ``.py`` file at commit ``sha`` (no checkout)."""
        files = self.tree(sha)
        blobs = self.read_blobs(files.values())
        return {path: blobs[blob] for path, blob in files.items()}

    def changed_files(self, old: str | None, new: str) -> list[str]:
        """Paths that differ between commits ``old`` and ``new`` (``old=None``: the root commit).

        Renames are reported as a deletion plus an addition.
        """
        self._check_rev(new)
        if old is None:
            out = self._run(
                "diff-tree", "--root", "-r", "--no-commit-id", "--name-only", "-z", new, rev=new
            )
        else:
            self._check_rev(old)
            out = self._run(
                "diff", "--name-only", "--no-renames", "-z", old, new, "--", rev=f"{old}..{new}"
            )
        return sorted(p.decode("utf-8", "surrogateescape") for p in out.split(b"\0") if p)

    def file_stats(self, sha: str, paths: Iterable[str] | None = None) -> dict[str, FileStats]:
        """Churn and first/last commit time of each file up to commit ``sha`` (inclusive).

        One ``git log --name-only`` pass over the history; renames are not followed.
        """
        self._check_rev(sha)
        args = ["log", f"--format={_RECORD}%ct", "--name-only", "--no-renames", "-z", sha, "--"]
        wanted = set(paths) if paths is not None else None
        out = self._run(*args, rev=sha).decode("utf-8", "surrogateescape")
        counts: dict[str, list[int]] = {}
        for record in out.split(_RECORD)[1:]:
            header, _, rest = record.partition("\0")
            ts = int(header)
            for path in rest.lstrip("\n").split("\0"):
                if not path or (wanted is not None and path not in wanted):
                    continue
                entry = counts.get(path)
                if entry is None:
                    counts[path] = [1, ts, ts]
                else:
                    entry[0] += 1
                    entry[1] = min(entry[1], ts)
                    entry[2] = max(entry[2], ts)
        return {p: FileStats(p, c, first, last) for p, (c, first, last) in counts.items()}

    def _check_rev(self, rev: str) -> None:
        # Options must never be smuggled in as revisions.
        if not rev or rev.startswith("-"):
            raise BadRevisionError(f"{rev!r} is not a revision")
