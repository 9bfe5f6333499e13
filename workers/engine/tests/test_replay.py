"""End to end: a synthetic history replayed through all five engines, with and without exchange."""

from __future__ import annotations

import random

from workers.engine.knowledge import KNOWLEDGE_CONTRACTS, validate_payload
from workers.engine.replay import KnowledgeStore, compare, replay

from .sources import function_of_complexity, function_of_length

FIX_RATE = {"long": 0.15, "bare": 0.75, "complex": 0.3}


def render(kind: str, name: str, size: int, fixed: bool, extra: int) -> str:
    if kind == "long":
        return function_of_length(name, size)
    if kind == "complex":
        return function_of_complexity(name, size)
    handler = "except ValueError:" if fixed else "except:"
    body = "".join(f"    y{i} = {i}\n" for i in range(extra))
    return (
        f"def {name}(x):\n{body}    try:\n        return int(x)\n    {handler}\n        return 0\n"
    )


def build_history(builder, commits: int, seed: int = 11) -> None:
    rng = random.Random(seed)
    functions: dict[str, dict] = {}

    def add(kind: str) -> None:
        name = f"{kind}_{len(functions)}"
        size = {"long": rng.randint(55, 110), "complex": rng.randint(12, 20), "bare": 0}[kind]
        functions[name] = {
            "kind": kind,
            "size": size,
            "fixed": False,
            "extra": 0,
            "file": f"pkg/m{len(functions) % 6}.py",
        }

    def write() -> None:
        files: dict[str, list[str]] = {}
        for name in sorted(functions):
            spec = functions[name]
            files.setdefault(spec["file"], []).append(
                render(spec["kind"], name, spec["size"], spec["fixed"], spec["extra"])
            )
        for path, parts in files.items():
            builder.write(path, "\n\n".join(parts))

    for kind, count in (("long", 30), ("bare", 15), ("complex", 12)):
        for _ in range(count):
            add(kind)
    write()
    builder.commit("initial")
    for _ in range(commits - 1):
        open_issues = [n for n, s in functions.items() if not s["fixed"]]
        for name in rng.sample(open_issues, min(6, len(open_issues))):
            spec = functions[name]
            if rng.random() < FIX_RATE[spec["kind"]]:
                spec["fixed"] = True
                spec["size"] = {"long": 30, "complex": 4, "bare": 0}[spec["kind"]]
            elif spec["kind"] == "bare":
                spec["extra"] += 1
            else:
                spec["size"] += rng.randint(1, 3)
        if rng.random() < 0.5:
            add(rng.choice(["long", "bare", "complex"]))
        write()
        builder.commit("work")


def test_exchange_makes_think_better_calibrated(builder):
    build_history(builder, commits=30)
    result = compare(builder.repo)
    without, with_ = result["without_exchange"], result["with_exchange"]
    assert with_["outcomes"] == without["outcomes"]  # Learning observes the same history
    assert with_["outcomes"]["fixed"] > 10 and with_["outcomes"]["persisted"] > 30
    assert without["calibration"]["pairs"] == with_["calibration"]["pairs"] > 100
    assert result["brier_improvement"] >= 0.10
    assert with_["published"]["learned_pattern"] > 0


def test_everything_published_meets_the_contract(builder, monkeypatch):
    build_history(builder, commits=6)
    seen: list = []
    original = KnowledgeStore.publish

    def spy(self, source, drafts):
        drafts = list(drafts)
        seen.extend(drafts)
        original(self, source, drafts)

    monkeypatch.setattr(KnowledgeStore, "publish", spy)
    report = replay(builder.repo)
    assert report.commits == 6
    kinds = {d.knowledge_type for d in seen}
    assert kinds == set(KNOWLEDGE_CONTRACTS)
    for item in seen:
        assert validate_payload(item.knowledge_type, item.payload) == [], item
        assert 0 <= item.confidence <= 1
        assert item.urgency in ("low", "normal", "high", "critical")


def test_replay_is_deterministic(builder):
    build_history(builder, commits=8)
    first = replay(builder.repo)
    second = replay(builder.repo)
    assert first.pairs == second.pairs
    assert first.outcomes == second.outcomes
