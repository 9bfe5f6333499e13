"""Study of Think's forecast: what carries information about an issue being ``fixed`` at the
next change of its function, and how much Brier skill an honest forecaster reaches
(docs/workers.md, "What limits the skill").

It replays a repository with exchange (:func:`.replay.replay`), keeps every analysed snapshot,
and turns each of Think's scored forecasts into a decision record: the features known when it
was made (the rule, how far past the threshold, the unit's kind, whether the function changed
before and how often, the issue's age, how often it persisted already, the file's churn) and
the outcome Learning observed. Then, per repository:

- the fix rate by feature value (a feature that carries information has rates that differ);
- prequential candidates, each a Think-like forecast (base rate moved by the mean of shrunk
  log-odds shifts of the fix rates of its patterns, counted only from outcomes observed before
  the decision) with a feature set; ``think`` uses Think's own patterns and must reproduce
  Think's figures;
- in-sample ceilings, which peek at all outcomes and so are *not* forecasts: the best
  monotone recalibration of Think's forecast (isotonic), the single hindsight rate, and the
  rate per rule x margin x slack cell.

With ``--prior-from`` (tuning repositories), also Think pooling their fix rates with this
project's, as a fleet working on several projects shares them through the exchange.

CLI: ``python -m workers.engine.forecast_study REPO [REPO ...] [--commits N]
[--prior-from REPO ...] [--records DIR]`` prints JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .analysis import Analyzer, Snapshot
from .calibration import forecast_report, prequential_base_rates
from .gitrepo import GitRepo
from .learning import observe
from .recall import churn_bucket
from .replay import _advance_stats, replay
from .rules import margin_contexts

Record = dict[str, Any]


class _KeepingAnalyzer(Analyzer):
    """An :class:`Analyzer` that keeps the snapshots it makes (in commit order)."""

    def __init__(self) -> None:
        super().__init__()
        self.snapshots: list[Snapshot] = []

    def analyze_commit(self, *args: Any, **kwargs: Any) -> Snapshot:
        snap = super().analyze_commit(*args, **kwargs)
        self.snapshots.append(snap)
        return snap


@dataclass
class _History:
    """What is known of functions and issues up to the current commit."""

    changes: dict[tuple[str, str], int] = field(default_factory=dict)
    last_change: dict[tuple[str, str], int] = field(default_factory=dict)
    first_seen: dict[str, int] = field(default_factory=dict)
    persisted: dict[str, int] = field(default_factory=dict)

    def features(self, snap: Snapshot, fingerprint: str, index: int) -> dict[str, str]:
        issue = snap.issues[fingerprint]
        key = (issue.path, issue.qualname)
        unit = snap.units[key]
        changes = self.changes.get(key, 0)
        since = index - self.last_change[key] if key in self.last_change else None
        age = index - self.first_seen.get(fingerprint, index)
        return {
            "rule": issue.rule,
            **margin_contexts(issue.rule, issue.metric),
            "kind": unit.kind,
            "test": str("test" in issue.path),
            "changes": str(min(changes, 3)),
            "recent": "none" if since is None else "recent" if since <= 5 else "old",
            "age": "new" if age <= 2 else "young" if age <= 30 else "old",
            "persisted": str(min(self.persisted.get(fingerprint, 0), 2)),
        }

    def advance(self, prev: Snapshot, snap: Snapshot, changed: set[str], index: int) -> None:
        for key, unit in snap.units.items():
            old = prev.units.get(key) if key[0] in changed else None
            if old is not None and old.body_hash != unit.body_hash:
                self.changes[key] = self.changes.get(key, 0) + 1
                self.last_change[key] = index
        for fingerprint in snap.issues:
            self.first_seen.setdefault(fingerprint, index)


def decision_records(repo: GitRepo, *, max_commits: int | None = None) -> tuple[list, dict]:
    """Think's scored forecasts of a replay with exchange, as records with their features."""
    analyzer = _KeepingAnalyzer()
    report = replay(repo, max_commits=max_commits, exchange=True, analyzer=analyzer)
    commits = repo.commits(max_count=max_commits, first_parent=True)
    snaps = analyzer.snapshots
    by_step: dict[int, list] = defaultdict(list)
    for p, outcome, step in report.pairs:
        by_step[step].append((p, outcome))
    history, records = _History(), []
    stats = repo.file_stats(commits[0].sha)
    for fingerprint in snaps[0].issues:
        history.first_seen.setdefault(fingerprint, 0)
    for index in range(1, len(commits)):
        prev, snap = snaps[index - 1], snaps[index]
        context = {path: {"churn": churn_bucket(s.churn)} for path, s in stats.items()}
        changed = repo.changed_files(commits[index - 1].sha, commits[index].sha)
        stats = _advance_stats(stats, changed, commits[index].timestamp)
        outcomes = observe(prev, snap, changed_files=changed, contexts=context)
        scored = [o for o in outcomes if o.success is not None and o.proposal_id]
        pairs = by_step.get(index, [])
        if len(pairs) != len(scored):
            raise RuntimeError(f"commit {index}: {len(pairs)} forecasts, {len(scored)} outcomes")
        for o, (p, y) in zip(scored, pairs, strict=True):
            features = history.features(prev, o.fingerprint, index - 1)
            features["churn"] = context.get(o.path, {}).get("churn", "low")
            records.append({"p": p, "y": y, "step": index, "features": features})
        for o in scored:
            if o.status == "persisted":
                history.persisted[o.fingerprint] = history.persisted.get(o.fingerprint, 0) + 1
        history.advance(prev, snap, set(changed), index)
    return records, report.summary().get("calibration", {})


def _logit(p: float) -> float:
    p = min(1 - 1e-6, max(1e-6, p))
    return math.log(p / (1 - p))


def _pattern(record: Record, feature: str) -> str:
    values = record["features"]
    if feature.startswith("*|"):  # pooled over all rules, as Learning's margin/slack patterns
        return f"{feature}:{values[feature[2:]]}"
    if feature == "rule":
        return f"rule:{values['rule']}"
    return f"rule:{values['rule']}|{feature}:{values[feature]}"


def _counts(records: Sequence[Record], features: Sequence[str]) -> tuple[dict, list[int]]:
    """Successes and samples per pattern (and overall) of ``records``: the learned patterns a
    Learning worker of another project would have shared."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    total = [0, 0]
    for record in records:
        _count(record, features, counts, total)
    return counts, total


def _count(record: Record, features: Sequence[str], counts: dict, total: list[int]) -> None:
    """Add ``record``'s outcome to the overall ``total`` and to its pattern of each feature."""
    total[0] += record["y"]
    total[1] += 1
    for feature in features:
        entry = counts[_pattern(record, feature)]
        entry[0] += record["y"]
        entry[1] += 1


def prequential(
    records: Sequence[Record],
    features: Sequence[str],
    *,
    strength: float = 20.0,
    prior: Sequence[Record] = (),
) -> list[float]:
    """Think's combination rule over ``features``' fix rates, from earlier outcomes only.

    ``prior`` are other projects' records: their pattern counts are pooled with this one's
    (as Think pools the ``learned_pattern`` items of several Learning sources); the base rate
    stays this project's own."""
    counts, _ = _counts(prior, features)
    total = [0, 0]
    by_time = sorted(records, key=lambda r: r["step"])
    seen, forecasts = 0, []
    for record in records:
        decided = record["step"] - 1  # outcomes observed at or before the decision's commit
        while seen < len(by_time) and by_time[seen]["step"] <= decided:
            _count(by_time[seen], features, counts, total)
            seen += 1
        base = (total[0] + 0.5) / (total[1] + 1)
        shifts = []
        for feature in features:
            successes, n = counts.get(_pattern(record, feature), (0, 0))
            if n >= 3:
                shifts.append(_logit((successes + base * strength) / (n + strength)) - _logit(base))
        log_odds = _logit(base) + (sum(shifts) / len(shifts) if shifts else 0.0)
        forecasts.append(min(0.98, max(0.001, 1 / (1 + math.exp(-log_odds)))))
    return forecasts


def _isotonic(forecasts: Sequence[float], outcomes: Sequence[int]) -> list[float]:
    """In-sample pool-adjacent-violators fit (peeks at every outcome: a ceiling, not a forecast)."""
    blocks: list[list[Any]] = []
    for i in sorted(range(len(forecasts)), key=lambda i: forecasts[i]):
        blocks.append([outcomes[i], 1, [i]])
        while len(blocks) > 1 and blocks[-2][0] * blocks[-1][1] >= blocks[-1][0] * blocks[-2][1]:
            s, n, members = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += n
            blocks[-1][2] += members
    fitted = [0.0] * len(forecasts)
    for s, n, members in blocks:
        for i in members:
            fitted[i] = s / n
    return fitted


def _cell_rates(records: Sequence[Record], key: Callable[[Record], Any]) -> list[float]:
    cells: dict[Any, list[int]] = defaultdict(lambda: [0, 0])
    for r in records:
        cells[key(r)][0] += r["y"]
        cells[key(r)][1] += 1
    return [cells[key(r)][0] / cells[key(r)][1] for r in records]


THINK = ("rule", "*|margin", "*|slack")
CANDIDATES: dict[str, tuple[str, ...]] = {
    "think": THINK,
    "+ rule x slack": ("rule", "*|margin", "*|slack", "slack"),
    "+ kind": (*THINK, "*|kind"),
    "+ test code": (*THINK, "*|test"),
    "+ function changes": (*THINK, "*|changes"),
    "+ recent change": (*THINK, "*|recent"),
    "+ issue age": (*THINK, "*|age"),
    "+ past persistence": (*THINK, "*|persisted"),
    "+ file churn": (*THINK, "churn"),
    "all": (*THINK, "*|kind", "*|test", "*|changes", "*|recent", "*|age", "*|persisted"),
}


def _skill(forecasts: Sequence[float], records: Sequence[Record], ci: bool) -> dict[str, Any]:
    triples = [(p, r["y"], r["step"]) for p, r in zip(forecasts, records, strict=True)]
    report = forecast_report(triples, resamples=1000 if ci else 0)
    out = {"brier_skill": round(report["brier_skill"], 4), "auc": report["auc"]}
    if out["auc"] is not None:
        out["auc"] = round(out["auc"], 3)
    if ci:
        out["skill_ci"] = [round(v, 4) for v in report["ci"]["brier_skill"]]
    return out


def study(records: Sequence[Record], prior: Sequence[Record] = ()) -> dict[str, Any]:
    """Fix rates by feature, prequential candidates and in-sample ceilings of one history;
    with ``prior`` (other projects' records) also Think pooling their fix rates."""
    outcomes = [r["y"] for r in records]
    rates: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for r in records:
        for name, value in r["features"].items():
            rates[name][value][0] += r["y"]
            rates[name][value][1] += 1
    candidates = {
        name: _skill(prequential(records, features), records, ci=name in ("think", "all"))
        for name, features in CANDIDATES.items()
    }
    if prior:
        pooled = prequential(records, THINK, prior=prior)
        candidates["think + other projects' patterns"] = _skill(pooled, records, ci=True)
    think = [r["p"] for r in records]
    hindsight = [sum(outcomes) / len(outcomes)] * len(records)
    cells = _cell_rates(
        records, lambda r: tuple(r["features"][k] for k in ("rule", "margin", "slack"))
    )
    return {
        "decisions": len(records),
        "fixed": sum(outcomes),
        "reference_mean": round(
            sum(prequential_base_rates([(r["p"], r["y"], r["step"]) for r in records]))
            / len(records),
            4,
        ),
        "think_as_replayed": _skill(think, records, ci=True),
        "fix_rate_by_feature": {
            name: {v: f"{s}/{n} = {s / n:.3f}" for v, (s, n) in sorted(values.items())}
            for name, values in rates.items()
        },
        "prequential": candidates,
        "in_sample_ceilings": {
            "isotonic(think)": _skill(_isotonic(think, outcomes), records, ci=False),
            "hindsight rate": _skill(hindsight, records, ci=False),
            "rule x margin x slack cells": _skill(cells, records, ci=False),
        },
    }


def _records(path: str, commits: int | None, cache: str | None) -> list[Record]:
    """The decision records of a repository, from ``cache/<name>.json`` when it is there."""
    from pathlib import Path

    stored = Path(cache, f"{Path(path).resolve().name}-{commits}.json") if cache else None
    if stored is not None and stored.exists():
        return json.loads(stored.read_text())
    records, _ = decision_records(GitRepo(path), max_commits=commits)
    if stored is not None:
        stored.parent.mkdir(parents=True, exist_ok=True)
        stored.write_text(json.dumps(records))
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repos", nargs="+")
    parser.add_argument("--commits", type=int, default=None, help="replay the last N commits")
    parser.add_argument(
        "--prior-from",
        nargs="*",
        default=[],
        help="other projects (tuning repositories) whose fix rates Think may pool",
    )
    parser.add_argument("--records", help="directory caching each repository's records")
    args = parser.parse_args(argv)
    prior = [r for p in args.prior_from for r in _records(p, args.commits, args.records)]
    result = {path: study(_records(path, args.commits, args.records), prior) for path in args.repos}
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
