"""``RepoView``: one process's read-only view of a git checkout for the built-in workers.

The engine is deterministic, so every worker can derive the same snapshot (issues) and the same
proposals (ids) for a commit from the repository itself; what they exchange is knowledge. In
one process (``replay_history``, a test) the workers share one view, so a commit is analysed
once per rule set; in separate processes each has its own. A lock makes it safe for threads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import replace

from workers.engine.analysis import Analyzer, Snapshot
from workers.engine.dream import Proposal, propose
from workers.engine.gitrepo import Commit, FileStats, GitRepo
from workers.engine.rules import Rules

_KEEP = 4  # snapshots / stats kept per view (the current and previous commits)


class RepoView:
    def __init__(self, path: str):
        self.repo = GitRepo(path)
        self.path = str(self.repo.path.resolve())
        self.analyzer = Analyzer()
        self._lock = threading.RLock()
        self._snapshots: OrderedDict[tuple[str, str], Snapshot] = OrderedDict()
        self._proposals: OrderedDict[tuple[str, str], list[Proposal]] = OrderedDict()
        self._stats: OrderedDict[str, dict[str, FileStats]] = OrderedDict()

    @staticmethod
    def _put(cache: OrderedDict, key, value) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > _KEEP:
            cache.popitem(last=False)

    def head(self) -> Commit | None:
        commits = self.repo.commits(max_count=1)
        return commits[-1] if commits else None

    def commits(self, max_count: int | None = None) -> list[Commit]:
        """Oldest first, following first parents (the branch's own history)."""
        return self.repo.commits(max_count=max_count, first_parent=True)

    def snapshot(self, commit: Commit, rules: Rules | None = None) -> Snapshot:
        rules = rules or Rules()
        key = (commit.sha, rules.digest())
        with self._lock:
            found = self._snapshots.get(key)
            if found is None:
                self.analyzer.rules = rules
                found = self.analyzer.analyze_commit(
                    self.repo, commit.sha, timestamp=commit.timestamp
                )
                self._put(self._snapshots, key, found)
            return found

    def proposals(self, commit: Commit, rules: Rules | None = None) -> list[Proposal]:
        """Proposals for the commit's issues without knowledge (ids, targets, impacts)."""
        rules = rules or Rules()
        key = (commit.sha, rules.digest())
        with self._lock:
            found = self._proposals.get(key)
            if found is None:
                found = propose(self.snapshot(commit, rules).issues.values())
                self._put(self._proposals, key, found)
            return found

    def file_stats(self, commit: Commit, previous: Commit | None = None) -> dict[str, FileStats]:
        """Churn and age per path at ``commit``; advanced from ``previous`` when it is known."""
        with self._lock:
            found = self._stats.get(commit.sha)
            if found is not None:
                return found
            base = self._stats.get(previous.sha) if previous is not None else None
            if base is None:
                found = self.repo.file_stats(commit.sha)
            else:
                found = dict(base)
                for path in self.repo.changed_files(previous.sha, commit.sha):
                    old = found.get(path)
                    ts = commit.timestamp
                    found[path] = (
                        FileStats(path, 1, ts, ts)
                        if old is None
                        else replace(
                            old,
                            churn=old.churn + 1,
                            first_time=min(old.first_time, ts),
                            last_time=max(old.last_time, ts),
                        )
                    )
            self._put(self._stats, commit.sha, found)
            return found

    def changed_files(self, previous: Commit, commit: Commit) -> list[str]:
        return self.repo.changed_files(previous.sha, commit.sha)
