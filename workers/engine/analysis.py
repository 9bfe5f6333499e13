"""Analysis engine: measure a commit (or a set of files), apply the rules, and describe the result
as ``issue_pattern`` and ``complexity_trend`` knowledge.

Per-file metrics are cached by git blob sha (path-independent) and per-file issues by
(path, blob, rules digest), so replaying history only parses files a commit changed.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import Any

from .gitrepo import GitRepo
from .knowledge import Draft, draft, iter_payloads
from .metrics import FileMetrics, UnitMetrics, measure_source
from .risk import risk_level, risk_subject
from .rules import Issue, Rules, evaluate_units

ROOT_SCOPE = "<root>"
_URGENCY_BY_SEVERITY = {"low": "low", "medium": "normal", "high": "high"}


@dataclass(frozen=True)
class Snapshot:
    """What Analysis knows about one commit; the unit of comparison for Learning.

    ``units`` maps ``(path, qualname)`` to metrics; ``issues`` maps fingerprint to issue;
    ``skipped`` lists files that could not be parsed (they contribute no units or issues).
    """

    commit: str | None
    rules: Rules
    units: Mapping[tuple[str, str], UnitMetrics]
    issues: Mapping[str, Issue]
    files: int
    skipped: tuple[str, ...] = ()
    timestamp: int | None = None

    @property
    def skipped_count(self) -> int:
        return len(self.skipped)

    @cached_property
    def issues_by_unit(self) -> dict[tuple[str, str], list[Issue]]:
        """Issues grouped by ``(path, qualname)``."""
        index: dict[tuple[str, str], list[Issue]] = defaultdict(list)
        for issue in self.issues.values():
            index[(issue.path, issue.qualname)].append(issue)
        return dict(index)


def blob_sha(data: bytes) -> str:
    """The git blob sha of ``data`` (so file-based and commit-based analysis share the cache)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Analyzer:
    """Analyses commits or file sets with ``rules``; keeps an LRU cache of parsed files.

    ``stats`` counts ``parsed`` files and ``cache_hits`` (for benchmarks and tests).
    Not thread-safe; use one analyzer per worker.
    """

    def __init__(self, rules: Rules | None = None, *, max_cache: int = 20_000) -> None:
        self.rules = rules or Rules()
        self.max_cache = max_cache
        self._metrics: OrderedDict[str, FileMetrics] = OrderedDict()
        self._issues: OrderedDict[tuple[str, str, str], tuple[Issue, ...]] = OrderedDict()
        self.stats = {"parsed": 0, "cache_hits": 0}

    def analyze_commit(
        self,
        repo: GitRepo,
        sha: str,
        *,
        include: Callable[[str], bool] | None = None,
        timestamp: int | None = None,
    ) -> Snapshot:
        """Analyse the ``.py`` files of commit ``sha`` (optionally filtered by ``include``)."""
        tree = (
            repo.tree(sha)
            if include is None
            else repo.tree(sha, include=lambda p: p.endswith(".py") and include(p))
        )
        found = self._cached(tree.values())
        missing = [blob for blob in set(tree.values()) if blob not in found]
        for blob, data in repo.read_blobs(missing).items():
            found[blob] = self._measure(blob, data)
        return self._snapshot(sha, tree, found, timestamp)

    def analyze_files(
        self, files: Mapping[str, str | bytes], *, commit: str | None = None
    ) -> Snapshot:
        """Analyse in-memory sources ``{path: source}`` (same cache, keyed by blob sha)."""
        tree: dict[str, str] = {}
        data_by_blob: dict[str, bytes] = {}
        for path, source in files.items():
            data = source.encode("utf-8") if isinstance(source, str) else source
            tree[path] = blob = blob_sha(data)
            data_by_blob[blob] = data
        found = self._cached(tree.values())
        for blob, data in data_by_blob.items():
            if blob not in found:
                found[blob] = self._measure(blob, data)
        return self._snapshot(commit, tree, found, None)

    def _cached(self, blobs: Iterable[str]) -> dict[str, FileMetrics]:
        found = {}
        for blob in blobs:
            metrics = self._metrics.get(blob)
            if metrics is not None:
                self._metrics.move_to_end(blob)
                found[blob] = metrics
                self.stats["cache_hits"] += 1
        return found

    def _measure(self, blob: str, data: bytes) -> FileMetrics:
        metrics = measure_source(data)
        self.stats["parsed"] += 1
        self._metrics[blob] = metrics
        if len(self._metrics) > self.max_cache:
            self._metrics.popitem(last=False)
        return metrics

    def _file_issues(
        self, path: str, blob: str, units: tuple[UnitMetrics, ...], digest: str
    ) -> tuple[Issue, ...]:
        key = (path, blob, digest)
        cached = self._issues.get(key)
        if cached is None:
            cached = tuple(evaluate_units(units, path, self.rules))
            self._issues[key] = cached
            if len(self._issues) > self.max_cache:
                self._issues.popitem(last=False)
        return cached

    def _snapshot(
        self,
        commit: str | None,
        tree: Mapping[str, str],
        metrics_by_blob: Mapping[str, FileMetrics],
        timestamp: int | None,
    ) -> Snapshot:
        units: dict[tuple[str, str], UnitMetrics] = {}
        issues: dict[str, Issue] = {}
        skipped = []
        digest = self.rules.digest()
        for path in sorted(tree):
            blob = tree[path]
            metrics = metrics_by_blob[blob]
            if metrics.error is not None:
                skipped.append(path)
                continue
            for unit in metrics.units:
                units[(path, unit.qualname)] = unit
            for issue in self._file_issues(path, blob, metrics.units, digest):
                issues[issue.fingerprint] = issue
        return Snapshot(
            commit=commit,
            rules=self.rules,
            units=MappingProxyType(units),
            issues=MappingProxyType(issues),
            files=len(tree),
            skipped=tuple(skipped),
            timestamp=timestamp,
        )


def reevaluate(snapshot: Snapshot, rules: Rules) -> Snapshot:
    """The same snapshot judged by other rules (no parsing; used to compare like with like)."""
    if rules.digest() == snapshot.rules.digest():
        return snapshot
    by_path: dict[str, list[UnitMetrics]] = defaultdict(list)
    for (path, _), unit in snapshot.units.items():
        by_path[path].append(unit)
    issues: dict[str, Issue] = {}
    for path, units in by_path.items():
        for issue in evaluate_units(units, path, rules):
            issues[issue.fingerprint] = issue
    return Snapshot(
        commit=snapshot.commit,
        rules=rules,
        units=snapshot.units,
        issues=MappingProxyType(issues),
        files=snapshot.files,
        skipped=snapshot.skipped,
        timestamp=snapshot.timestamp,
    )


def scope_of(path: str) -> str:
    """Top-level directory of ``path``; files at the repository root belong to ``<root>``."""
    head, sep, _ = path.partition("/")
    return head if sep else ROOT_SCOPE


def rule_counts(snapshot: Snapshot) -> dict[str, int]:
    """Number of issues per rule (rules without issues are absent)."""
    counts: dict[str, int] = defaultdict(int)
    for issue in snapshot.issues.values():
        counts[issue.rule] += 1
    return dict(counts)


def issue_patterns(
    snapshot: Snapshot,
    *,
    limit: int | None = None,
    min_severity: str = "low",
    known: Iterable[Any] = (),
) -> list[Draft]:
    """``issue_pattern`` drafts, most severe first (then by location), optionally capped.

    Issues already present in ``known`` (received or previously sent ``issue_pattern`` items)
    with the same fingerprint and severity are left out, so a replay only sends what changed.
    Confidence 0.9 (static analysis is deterministic but rules are heuristics); urgency follows
    severity (low -> low, medium -> normal, high -> high).
    """
    order = {"high": 0, "medium": 1, "low": 2}
    floor = order[min_severity]
    seen = {
        (str(p.get("fingerprint")), str(p.get("severity")))
        for p, _ in iter_payloads(known, "issue_pattern")
    }
    issues = sorted(
        (
            i
            for i in snapshot.issues.values()
            if order[i.severity] <= floor and (i.fingerprint, i.severity) not in seen
        ),
        key=lambda i: (order[i.severity], i.location, i.rule),
    )
    if limit is not None:
        issues = issues[:limit]
    payloads = []
    for issue in issues:
        payload: dict[str, Any] = issue.to_payload()
        if snapshot.commit:
            payload["commit"] = snapshot.commit
        payloads.append(draft("issue_pattern", payload, 0.9, _URGENCY_BY_SEVERITY[issue.severity]))
    return payloads


def scope_complexity(snapshot: Snapshot) -> dict[str, tuple[float, int]]:
    """``{scope: (average complexity of its functions, number of functions)}``."""
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for (path, _), unit in snapshot.units.items():
        if unit.is_function:
            entry = sums[scope_of(path)]
            entry[0] += unit.complexity
            entry[1] += 1
    return {scope: (total / n, int(n)) for scope, (total, n) in sums.items()}


def complexity_trends(
    current: Snapshot, previous: Snapshot | None = None, *, tolerance: float = 0.05
) -> list[Draft]:
    """``complexity_trend`` drafts per scope, comparing average function complexity.

    ``direction`` is ``increasing``/``decreasing`` when the average moved by more than
    ``tolerance`` (absolute), else ``stable``; without a previous snapshot every scope is
    ``stable`` with delta 0 and confidence 0.5 (no comparison), else confidence 0.8. A scope
    new in ``current`` compares against 0 functions, i.e. is stable with delta 0.
    """
    now = scope_complexity(current)
    before = scope_complexity(previous) if previous is not None else {}
    drafts = []
    for scope in sorted(now):
        avg, count = now[scope]
        prev = before.get(scope)
        delta = avg - prev[0] if prev is not None else 0.0
        direction = "stable"
        if delta > tolerance:
            direction = "increasing"
        elif delta < -tolerance:
            direction = "decreasing"
        payload = {
            "scope": scope,
            "direction": direction,
            "avg_complexity": round(avg, 4),
            "delta": round(delta, 4),
            "functions": count,
        }
        if current.commit:
            payload["commit"] = current.commit
        confidence = 0.8 if prev is not None else 0.5
        drafts.append(draft("complexity_trend", payload, confidence))
    return drafts


_SEVERITY_RISK_SCORE = {"low": 0.3, "medium": 0.55, "high": 0.8}


def code_risk_patterns(
    snapshot: Snapshot, churn: Mapping[str, str], *, min_samples: int = 2
) -> list[Draft]:
    """Analysis's own view of risk: ``risk_pattern`` drafts per ``rule:<rule>|churn:<bucket>``
    (the subject Think's committee uses), scored from the code alone.

    ``risk_score`` is the mean over the group's issues of their severity's score (low 0.3,
    medium 0.55, high 0.8), plus 0.1 for a high-churn file (code that changes often and is past
    a threshold breaks more easily); levels as :func:`.risk.risk_level`. ``churn`` maps a path
    to its bucket (``unknown`` if absent). Confidence ``0.9 x samples / (samples + 5)``.
    Think judges the same subjects from its committee, so where the two views disagree the
    exchange detects a contradiction between them and resolves it.
    """
    groups: dict[str, list[Issue]] = defaultdict(list)
    for issue in snapshot.issues.values():
        groups[risk_subject(issue.rule, churn.get(issue.path))].append(issue)
    drafts = []
    for pattern in sorted(groups):
        group = groups[pattern]
        if len(group) < min_samples:
            continue
        score = sum(_SEVERITY_RISK_SCORE[i.severity] for i in group) / len(group)
        if pattern.endswith("|churn:high"):
            score += 0.1
        score = min(1.0, score)
        worst = sum(i.severity == "high" for i in group)
        payload = {
            "pattern": pattern,
            "risk_level": risk_level(score),
            "risk_score": round(score, 4),
            "samples": len(group),
            "evidence": f"{len(group)} issues in code, {worst} of high severity",
        }
        drafts.append(draft("risk_pattern", payload, 0.9 * len(group) / (len(group) + 5)))
    return drafts
