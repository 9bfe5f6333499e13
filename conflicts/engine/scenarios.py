"""Seeded benchmark scenarios with a known truth, as a replayable list of broadcast events.

``generate(ScenarioConfig(seed=...))`` returns a ``Scenario``: the ordered broadcast events
(knowledge type, subject, claim, source, confidence, observed-time offset, a schema-valid
payload, and the ground truth), the truth timeline of every subject and the source profiles.
The same config always gives the same scenario (one ``random.Random(seed)``, no set or hash
ordering), so the in-memory bench and a replay through the real HTTP/ORM path see exactly the
same events. ``Scenario.to_dict()`` is plain JSON; ``Scenario.from_dict`` reads it back.

What is modelled, and why (every number is a ``ScenarioConfig`` field):

* **The world.** Five built-in knowledge types with their registry decay times and claim
  vocabularies (risk_pattern 7 d / 4 levels, issue_pattern 5 d / 3, learned_pattern 14 d / 3,
  decision_outcome 3 d / 4, complexity_trend 7 d / 3). ``subjects_per_type`` subjects each.
  Subjects are keyed exactly as the registry derives them (fields joined by ``" | "``,
  lower-cased). Some learned_pattern subjects reuse risk_pattern pattern names, so equal
  subject strings exist across types and must not conflict.
* **Episodes.** A subject is looked at in episodes (a commit touching the code, a review
  round): 1 + Poisson(``mean_extra_episodes``) of them, at uniform times over a
  ``horizon_days`` window. In an episode each source of the type reports with its own rate
  (``report_rate``, 15-45 %; about three of ten sources), at uniform times within
  ``episode_spread_hours``. Later episodes repeat reports, so sources refresh their own items.
  The report rate is the assumption that matters most: it sets how much evidence a conflict
  carries, hence what *any* strategy can know (``python -m conflicts.engine.bench
  --sensitivity``: the oracle's accuracy goes from ~87 % at 10-30 % to ~91 % at the default
  to ~96 % at 30-70 %). The default (three reporters of ten) was chosen before tuning, as a
  fleet where workers of a type partly split the work; it was not changed to meet targets.
* **The truth changes.** At the start of each later episode the true claim changes with
  ``change_probability`` (the commit changed the code). Observations made after the change
  see the new value; items from before stay active until their source re-observes, so the
  stale majority-vs-fresh-minority conflict happens naturally and the newer claim is right.
* **Sources.** Each type has ``sources_per_type`` sources drawn from a fleet of named worker
  instances; reliability is drawn *per type* (a worker can be good at one type and bad at
  another). ``unreliable_fraction`` (30 %) of them are unreliable:
    - reliable: accuracy U(0.90, 0.95), confidence per item ~ N(accuracy, 0.05) and the
      item is right with probability equal to its confidence (calibrated);
    - unreliable: accuracy U(0.40, 0.55); ``overconfident_fraction`` (70 %) of them report
      confidence U(0.70, 0.95) whatever they say (over-confident), the rest are calibrated
      but low (confidence ~ N(accuracy, 0.08), right with that probability).
  A wrong claim is the subject's *decoy* (the plausible wrong reading: after a change, the
  old value) with probability ``decoy_share``, else uniform among the other wrong claims, so
  errors of different sources are correlated, as they are when sources share a blind spot.
* **Copiers.** ``copier_fraction`` (20 %) of the sources of a type copy a leader (another
  non-copier source of the type, reliable or not): when the leader reports, the copier
  re-broadcasts the same claim with probability U(0.6, 0.9), after Exp(``copy_lag_minutes``)
  minutes, with the leader's confidence +- N(0, 0.03). Copiers also report on their own.
* **Honest disagreement.** ``ambiguous_fraction`` (6 %) of subjects are genuinely ambiguous:
  reliable sources are right only with their (calibrated) confidence U(0.50, 0.70) and their
  mistakes always take the one other plausible reading. The truth is still defined, but the
  evidence is thin: these conflicts should have small margins and go to review.
* **Retries.** With ``duplicate_probability`` a source re-broadcasts the same observation a
  little later (a retry without idempotency key): a refresh, never a conflict.
* **Warm-up.** The first ``warmup_fraction`` (35 %) of the horizon is the warm-up: trust is
  learned there (the bench scores only conflicts opened after it).

Not modelled (documented limits): sources whose reliability drifts over time, adversarial
sources, copies with a different claim vocabulary, clock skew, out-of-order arrival (events
arrive at their observed time).

Events carry the ground truth (``truth_claim`` at the observed time, ``correct``) and
generator labels (profile, copied_from, ambiguous, duplicate, episode) for scoring and
analysis only: strategies never see them.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .detection import normalise

HOUR = 3600.0
DAY = 24 * HOUR


@dataclass(frozen=True, slots=True)
class TypeSpec:
    """A knowledge type as the registry defines it (decay, claim vocabulary, fields)."""

    name: str
    decay_seconds: float
    claims: tuple[str, ...]
    subject_fields: tuple[str, ...]
    claim_field: str


TYPE_SPECS: dict[str, TypeSpec] = {
    spec.name: spec
    for spec in (
        TypeSpec(
            "risk_pattern",
            7 * DAY,
            ("low", "medium", "high", "critical"),
            ("pattern",),
            "risk_level",
        ),
        TypeSpec(
            "issue_pattern", 5 * DAY, ("low", "medium", "high"), ("rule", "location"), "severity"
        ),
        TypeSpec(
            "learned_pattern",
            14 * DAY,
            ("effective", "ineffective", "mixed"),
            ("pattern",),
            "effect",
        ),
        TypeSpec(
            "decision_outcome",
            3 * DAY,
            ("execute", "approve", "defer", "reject"),
            ("proposal",),
            "decision",
        ),
        TypeSpec(
            "complexity_trend",
            7 * DAY,
            ("increasing", "stable", "decreasing"),
            ("scope",),
            "direction",
        ),
    )
}


@dataclass(frozen=True, slots=True)
class ScenarioConfig:
    """Every knob of the generator; see the module docstring for what each models."""

    seed: int = 1
    subjects_per_type: int = 200
    types: tuple[str, ...] = tuple(TYPE_SPECS)
    fleet_size: int = 12
    sources_per_type: int = 10
    unreliable_fraction: float = 0.30
    reliable_accuracy: tuple[float, float] = (0.90, 0.95)
    unreliable_accuracy: tuple[float, float] = (0.40, 0.55)
    overconfident_fraction: float = 0.70
    copier_fraction: float = 0.20
    copy_probability: tuple[float, float] = (0.60, 0.90)
    copy_lag_minutes: float = 15.0
    decoy_share: float = 0.60
    ambiguous_fraction: float = 0.06
    ambiguous_confidence: tuple[float, float] = (0.50, 0.70)
    horizon_days: float = 28.0
    mean_extra_episodes: float = 1.5
    max_episodes: int = 5
    report_rate: tuple[float, float] = (0.15, 0.45)
    episode_spread_hours: float = 8.0
    change_probability: float = 0.25
    duplicate_probability: float = 0.05
    shared_subject_fraction: float = 0.30
    warmup_fraction: float = 0.35
    #: ``episodes`` (above) or ``truth``: the truth-discovery family (``truth_family``).
    family: str = "episodes"
    #: truth family: sources claiming each subject, and the range of stated confidences.
    claims_per_subject: int = 5
    confidence_range: tuple[float, float] = (0.60, 0.95)

    def __post_init__(self) -> None:
        unknown = [t for t in self.types if t not in TYPE_SPECS]
        if unknown:
            raise ValueError(f"unknown knowledge types {unknown}")
        if self.sources_per_type > self.fleet_size or self.sources_per_type < 2:
            raise ValueError("need 2 <= sources_per_type <= fleet_size")
        if self.family not in ("episodes", "truth"):
            raise ValueError(f"unknown scenario family {self.family!r}")


@dataclass(frozen=True, slots=True)
class SourceProfile:
    """How one source behaves for one knowledge type (hidden from strategies)."""

    source: str
    knowledge_type: str
    reliable: bool
    accuracy: float
    overconfident: bool
    report_rate: float
    copies: str | None = None
    copy_probability: float = 0.0


@dataclass(frozen=True, slots=True)
class BroadcastEvent:
    """One broadcast to replay, in arrival order (``index``).

    ``offset`` is the observed time in seconds since the scenario start; arrival happens at
    the observed time. ``payload`` satisfies the type's registry schema and derives to
    ``subject``/``claim``. ``truth_claim``/``correct``/``labels`` are ground truth for scoring.
    """

    index: int
    knowledge_type: str
    subject: str
    claim: str
    source: str
    confidence: float
    offset: float
    payload: Mapping[str, Any]
    truth_claim: str
    correct: bool
    labels: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)} | {
            "payload": dict(self.payload),
            "labels": dict(self.labels),
        }


SubjectKey = tuple[str, str]


@dataclass(frozen=True)
class Scenario:
    """A generated scenario: ordered events plus the truth to score against."""

    config: ScenarioConfig
    events: tuple[BroadcastEvent, ...]
    truth: Mapping[SubjectKey, tuple[tuple[float, str], ...]]
    profiles: tuple[SourceProfile, ...]
    ambiguous: frozenset[SubjectKey]
    horizon: float
    warmup_end: float

    def truth_at(self, knowledge_type: str, subject: str, at: float) -> str:
        """The true claim of ``subject`` at time offset ``at``."""
        return _truth_at(self.truth[(knowledge_type, subject)], at)

    def decay_seconds(self, knowledge_type: str) -> float:
        return TYPE_SPECS[knowledge_type].decay_seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "horizon": self.horizon,
            "warmup_end": self.warmup_end,
            "profiles": [asdict(p) for p in self.profiles],
            "truth": [
                {
                    "knowledge_type": t,
                    "subject": s,
                    "timeline": [list(x) for x in tl],
                    "ambiguous": (t, s) in self.ambiguous,
                }
                for (t, s), tl in self.truth.items()
            ],
            "events": [e.to_dict() for e in self.events],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scenario:
        cfg = dict(data["config"])
        for name, value in cfg.items():
            if isinstance(value, list):
                cfg[name] = tuple(value)
        return cls(
            config=ScenarioConfig(**cfg),
            events=tuple(BroadcastEvent(**e) for e in data["events"]),
            truth={
                (t["knowledge_type"], t["subject"]): tuple((x[0], x[1]) for x in t["timeline"])
                for t in data["truth"]
            },
            profiles=tuple(SourceProfile(**p) for p in data["profiles"]),
            ambiguous=frozenset(
                (t["knowledge_type"], t["subject"]) for t in data["truth"] if t["ambiguous"]
            ),
            horizon=data["horizon"],
            warmup_end=data["warmup_end"],
        )

    def digest(self) -> str:
        """SHA-256 of the canonical JSON: equal digests = identical scenarios."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


# --- generation ---------------------------------------------------------------------------

_ROLES = ("analysis", "think", "learning", "dream", "recall", "review")
_ADJECTIVES = (
    "broad",
    "silent",
    "nested",
    "shared",
    "global",
    "lazy",
    "unchecked",
    "mutable",
    "implicit",
    "stale",
    "cyclic",
    "dynamic",
)
_NOUNS = (
    "except",
    "retry",
    "import",
    "state",
    "cache",
    "lock",
    "callback",
    "default",
    "fixture",
    "migration",
    "query",
    "signal",
)
_RULES = (
    "complexity",
    "long-function",
    "deep-nesting",
    "bare-except",
    "too-many-args",
    "duplicate-code",
    "unused-import",
    "magic-number",
)


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method: fine for the small means used here.
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _clip(value: float, low: float, high: float) -> float:
    return min(high, max(low, value))


def _subject_parts(ktype: str, i: int, rng: random.Random, patterns: list[str]) -> dict[str, str]:
    if ktype in ("risk_pattern", "learned_pattern"):
        return {"pattern": patterns[i]}
    if ktype == "issue_pattern":
        return {
            "rule": rng.choice(_RULES),
            "location": f"pkg{rng.randrange(8)}/mod{rng.randrange(40)}.py::func_{i}",
        }
    if ktype == "decision_outcome":
        return {"proposal": f"proposal-{i:05d}"}
    return {"scope": f"pkg{rng.randrange(8)}/mod{i:04d}.py"}


def _payload(
    spec: TypeSpec, parts: Mapping[str, str], claim: str, confidence: float, rng: random.Random
) -> dict[str, Any]:
    payload: dict[str, Any] = dict(parts)
    payload[spec.claim_field] = claim
    if spec.name == "risk_pattern":
        level = spec.claims.index(claim)
        payload["risk_score"] = round(_clip((level + rng.random()) / 4, 0, 1), 3)
        payload["samples"] = rng.randrange(1, 50)
    elif spec.name == "learned_pattern":
        low, high = {"effective": (0.7, 0.95), "ineffective": (0.05, 0.35), "mixed": (0.4, 0.6)}[
            claim
        ]
        payload["success_rate"] = round(rng.uniform(low, high), 3)
        payload["samples"] = rng.randrange(3, 80)
    elif spec.name == "decision_outcome":
        payload["predicted_success"] = round(confidence, 3)
    return payload


def _profiles(cfg: ScenarioConfig, rng: random.Random) -> list[SourceProfile]:
    fleet = [f"{_ROLES[i % len(_ROLES)]}-{i // len(_ROLES) + 1}" for i in range(cfg.fleet_size)]
    out: list[SourceProfile] = []
    for ktype in cfg.types:
        sources = sorted(rng.sample(fleet, cfg.sources_per_type))
        order = sources[:]
        rng.shuffle(order)
        n_bad = round(cfg.unreliable_fraction * len(sources))
        unreliable = set(order[:n_bad])
        copier_order = sources[:]
        rng.shuffle(copier_order)
        copiers = copier_order[: round(cfg.copier_fraction * len(sources))]
        originals = [s for s in sources if s not in copiers]
        for src in sources:
            bad = src in unreliable
            lo, hi = cfg.unreliable_accuracy if bad else cfg.reliable_accuracy
            leader = rng.choice(originals) if src in copiers else None
            out.append(
                SourceProfile(
                    source=src,
                    knowledge_type=ktype,
                    reliable=not bad,
                    accuracy=round(rng.uniform(lo, hi), 4),
                    overconfident=bad and rng.random() < cfg.overconfident_fraction,
                    report_rate=round(rng.uniform(*cfg.report_rate), 4),
                    copies=leader,
                    copy_probability=round(rng.uniform(*cfg.copy_probability), 4)
                    if leader
                    else 0.0,
                )
            )
    return out


def _observe(
    cfg: ScenarioConfig,
    rng: random.Random,
    prof: SourceProfile,
    claims: Sequence[str],
    truth: str,
    decoy: str,
    ambiguous: bool,
) -> tuple[str, float]:
    """One independent observation: (claim, confidence)."""
    if prof.reliable and ambiguous:
        confidence = rng.uniform(*cfg.ambiguous_confidence)
        p_right, decoy_share = confidence, 1.0
    elif prof.reliable:
        confidence = _clip(rng.gauss(prof.accuracy, 0.05), 0.5, 0.99)
        p_right, decoy_share = confidence, cfg.decoy_share
    elif prof.overconfident:
        confidence = rng.uniform(0.70, 0.95)
        p_right, decoy_share = prof.accuracy, cfg.decoy_share
    else:
        confidence = _clip(rng.gauss(prof.accuracy, 0.08), 0.2, 0.9)
        p_right, decoy_share = confidence, cfg.decoy_share
    if rng.random() < p_right:
        return truth, confidence
    others = [c for c in claims if c != truth]
    if rng.random() < decoy_share:
        return decoy, confidence
    return rng.choice(others), confidence


@dataclass
class _Raw:
    ktype: str
    subject: str
    parts: dict[str, str]
    claim: str
    source: str
    confidence: float
    t: float
    truth: str
    labels: dict[str, Any]
    copied_from: int | None = None  # position in the raw list


def generate(cfg: ScenarioConfig | None = None) -> Scenario:
    """Build the scenario for ``cfg`` (default config if None). Deterministic in ``cfg``."""
    cfg = cfg or ScenarioConfig()
    if cfg.family == "truth":
        return _generate_truth(cfg)
    rng = random.Random(cfg.seed)
    horizon = cfg.horizon_days * DAY
    profiles = _profiles(cfg, rng)
    pattern_pool = [
        f"{a}-{n}-{i}" for i, (a, n) in enumerate((a, n) for a in _ADJECTIVES for n in _NOUNS)
    ]
    rng.shuffle(pattern_pool)
    raw: list[_Raw] = []
    truth: dict[SubjectKey, tuple[tuple[float, str], ...]] = {}
    ambiguous: set[SubjectKey] = set()
    risk_patterns: list[str] = []

    for ktype in cfg.types:
        spec = TYPE_SPECS[ktype]
        profs = [p for p in profiles if p.knowledge_type == ktype]
        patterns = _pattern_names(cfg, rng, ktype, pattern_pool, risk_patterns)
        if ktype == "risk_pattern":
            risk_patterns = patterns[:]
        used: set[str] = set()
        for i in range(cfg.subjects_per_type):
            parts = _subject_parts(ktype, i, rng, patterns)
            subject = " | ".join(normalise(parts[f]) for f in spec.subject_fields)
            if subject in used:  # learned_pattern drew the same shared name twice
                parts = {"pattern": f"{patterns[i]}-{i}"}
                subject = normalise(parts["pattern"])
            used.add(subject)
            key = (ktype, subject)
            is_ambiguous = rng.random() < cfg.ambiguous_fraction
            if is_ambiguous:
                ambiguous.add(key)
            subject_raw = _RawSubject(ktype, subject, parts, is_ambiguous)
            truth[key] = _subject_episodes(cfg, rng, spec, profs, subject_raw, raw)

    return Scenario(
        config=cfg,
        events=tuple(_ordered_events(raw, truth, rng)),
        truth=truth,
        profiles=tuple(profiles),
        ambiguous=frozenset(ambiguous),
        horizon=horizon,
        warmup_end=cfg.warmup_fraction * horizon,
    )


def _pattern_names(
    cfg: ScenarioConfig, rng: random.Random, ktype: str, pool: list[str], risk: list[str]
) -> list[str]:
    """Pattern names for ``ktype``'s subjects: risk_pattern takes fresh ones; learned_pattern
    reuses some of risk_pattern's (``shared_subject_fraction``)."""
    patterns: list[str] = []
    for i in range(cfg.subjects_per_type):
        if ktype == "learned_pattern" and risk and (rng.random() < cfg.shared_subject_fraction):
            patterns.append(rng.choice(risk))
        else:
            patterns.append(f"{pool[i % len(pool)]}-{ktype[0]}{i}")
    return patterns


@dataclass(frozen=True)
class _RawSubject:
    ktype: str
    subject: str
    parts: dict[str, str]
    ambiguous: bool


def _subject_episodes(
    cfg: ScenarioConfig,
    rng: random.Random,
    spec: Any,
    profs: list[SourceProfile],
    subj: _RawSubject,
    raw: list[_Raw],
) -> tuple[tuple[float, str], ...]:
    """One subject's episodes: its true value over time (returned) and the reports, duplicates
    and copies of each episode (appended to ``raw``)."""
    horizon = cfg.horizon_days * DAY
    spread = cfg.episode_spread_hours * HOUR
    value = rng.choice(spec.claims)
    decoy = rng.choice([c for c in spec.claims if c != value])
    timeline = [(0.0, value)]
    n_episodes = min(cfg.max_episodes, 1 + _poisson(rng, cfg.mean_extra_episodes))
    starts = sorted(rng.uniform(0, horizon - spread) for _ in range(n_episodes))
    for ep, start in enumerate(starts):
        if ep > 0 and rng.random() < cfg.change_probability:
            decoy, value = value, rng.choice([c for c in spec.claims if c != value])
            timeline.append((start, value))
        reporters = [p for p in profs if rng.random() < p.report_rate]
        if not reporters:
            reporters = [rng.choice(profs)]
        episode_events: dict[str, int] = {}
        for prof in reporters:
            claim, conf = _observe(cfg, rng, prof, spec.claims, value, decoy, subj.ambiguous)
            t = start + rng.uniform(0, spread)
            labels = {
                "profile": "reliable" if prof.reliable else "unreliable",
                "episode": ep,
                "ambiguous": subj.ambiguous,
            }
            episode_events[prof.source] = len(raw)
            raw.append(
                _Raw(
                    subj.ktype, subj.subject, subj.parts, claim, prof.source, conf, t, value, labels
                )
            )
            if rng.random() < cfg.duplicate_probability:
                raw.append(
                    _Raw(
                        subj.ktype,
                        subj.subject,
                        subj.parts,
                        claim,
                        prof.source,
                        _clip(conf + rng.gauss(0, 0.02), 0, 1),
                        t + rng.uniform(10 * 60, 2 * HOUR),
                        value,
                        {**labels, "duplicate": True},
                    )
                )
        _episode_copies(cfg, rng, profs, subj, ep, value, episode_events, raw)
    return tuple(timeline)


def _episode_copies(
    cfg: ScenarioConfig,
    rng: random.Random,
    profs: list[SourceProfile],
    subj: _RawSubject,
    ep: int,
    value: str,
    episode_events: dict[str, int],
    raw: list[_Raw],
) -> None:
    """Copiers that did not report this episode themselves repeat their leader's report."""
    for prof in profs:
        if prof.copies is None or prof.source in episode_events:
            continue
        lead = episode_events.get(prof.copies)
        if lead is None or rng.random() >= prof.copy_probability:
            continue
        orig = raw[lead]
        lag = rng.expovariate(1.0 / (cfg.copy_lag_minutes * 60))
        raw.append(
            _Raw(
                subj.ktype,
                subj.subject,
                subj.parts,
                orig.claim,
                prof.source,
                _clip(orig.confidence + rng.gauss(0, 0.03), 0.05, 0.99),
                orig.t + lag,
                value,
                {
                    "profile": "copier",
                    "episode": ep,
                    "ambiguous": subj.ambiguous,
                    "leader": prof.copies,
                },
                copied_from=lead,
            )
        )


def _ordered_events(
    raw: list[_Raw], truth: dict[SubjectKey, tuple[tuple[float, str], ...]], rng: random.Random
) -> list[BroadcastEvent]:
    """The raw reports as broadcast events in time order, each with the truth at its time."""
    order = sorted(
        range(len(raw)), key=lambda i: (raw[i].t, raw[i].ktype, raw[i].subject, raw[i].source, i)
    )
    position = {raw_i: pos for pos, raw_i in enumerate(order)}
    events: list[BroadcastEvent] = []
    for pos, raw_i in enumerate(order):
        r = raw[raw_i]
        spec = TYPE_SPECS[r.ktype]
        truth_now = _truth_at(truth[(r.ktype, r.subject)], r.t)
        labels = dict(r.labels)
        if r.copied_from is not None:
            labels["copied_from"] = position[r.copied_from]
        events.append(
            BroadcastEvent(
                index=pos,
                knowledge_type=r.ktype,
                subject=r.subject,
                claim=r.claim,
                source=r.source,
                confidence=round(r.confidence, 4),
                offset=round(r.t, 3),
                payload=_payload(spec, r.parts, r.claim, r.confidence, rng),
                truth_claim=truth_now,
                correct=r.claim == truth_now,
                labels=labels,
            )
        )
    return events


def truth_family(seed: int = 1, subjects: int = 200, **overrides: Any) -> ScenarioConfig:
    """The truth-discovery family (issue 12): one type (``risk_pattern``), 10 sources of
    which 3 unreliable (right 30 % of the time; two of them copy each other), each subject
    claimed once by 5 random sources with confidence U(0.60, 0.95) whatever they say (stated
    confidence carries no information here), the truth fixed. The first ``warmup_fraction``
    (40 %) of the subjects is the training phase, where a reviewer decides every conflict left
    for review; the rest is the test phase, without a reviewer. Reliable sources are right
    U(0.80, 0.92) of the time, which puts plain majority vote near 90 %."""
    return ScenarioConfig(
        **{
            "seed": seed,
            "family": "truth",
            "types": ("risk_pattern",),
            "subjects_per_type": subjects,
            "fleet_size": 10,
            "sources_per_type": 10,
            "unreliable_fraction": 0.30,
            "reliable_accuracy": (0.80, 0.92),
            "unreliable_accuracy": (0.30, 0.30),
            "copier_fraction": 0.0,
            "copy_probability": (0.80, 0.80),
            "decoy_share": 0.60,
            "ambiguous_fraction": 0.0,
            "horizon_days": 20.0,
            "episode_spread_hours": 6.0,
            "duplicate_probability": 0.0,
            "shared_subject_fraction": 0.0,
            "warmup_fraction": 0.40,
            **overrides,
        }
    )


def _generate_truth(cfg: ScenarioConfig) -> Scenario:
    """The ``truth`` family (see ``truth_family``): one report per chosen source per subject."""
    rng = random.Random(cfg.seed)
    ktype = cfg.types[0]
    spec = TYPE_SPECS[ktype]
    horizon = cfg.horizon_days * DAY
    spread = cfg.episode_spread_hours * HOUR
    profiles, leader, follower = _truth_profiles(cfg, rng, ktype)
    by_source = {p.source: p for p in profiles}
    sources = [p.source for p in profiles]
    starts = sorted(rng.uniform(0, horizon - spread) for _ in range(cfg.subjects_per_type))
    raw: list[tuple[float, str, dict[str, str], str, str, float, str, dict[str, Any]]] = []
    truth: dict[SubjectKey, tuple[tuple[float, str], ...]] = {}
    for i, start in enumerate(starts):
        parts = {"pattern": f"{_ADJECTIVES[i % 12]}-{_NOUNS[(i // 12) % 12]}-t{i}"}
        subject = normalise(parts["pattern"])
        value = rng.choice(spec.claims)
        decoy = rng.choice([c for c in spec.claims if c != value])
        truth[(ktype, subject)] = ((0.0, value),)
        said = _truth_reports(cfg, rng, spec, sources, by_source, start, value, decoy)
        labels: dict[str, Any] = {}
        if leader in said and follower in said and rng.random() < cfg.copy_probability[0]:
            claim, t = said[leader]
            lag = rng.expovariate(1.0 / (cfg.copy_lag_minutes * 60))
            said[follower] = (claim, t + lag)
            labels = {"copied": True}
        for src, (claim, t) in said.items():
            profile = "reliable" if by_source[src].reliable else "unreliable"
            raw.append(
                (
                    t,
                    src,
                    parts,
                    subject,
                    claim,
                    rng.uniform(*cfg.confidence_range),
                    value,
                    {"profile": profile, **(labels if src == follower else {})},
                )
            )
    raw.sort(key=lambda r: (r[0], r[3], r[1]))
    events = tuple(
        BroadcastEvent(
            index=pos,
            knowledge_type=ktype,
            subject=subject,
            claim=claim,
            source=src,
            confidence=round(conf, 4),
            offset=round(t, 3),
            payload=_payload(spec, parts, claim, conf, rng),
            truth_claim=value,
            correct=claim == value,
            labels=labels,
        )
        for pos, (t, src, parts, subject, claim, conf, value, labels) in enumerate(raw)
    )
    # Training ends after the first ``warmup_fraction`` of the subjects have been reported.
    cut = starts[max(0, round(cfg.warmup_fraction * len(starts)) - 1)] + spread
    return Scenario(
        config=cfg,
        events=events,
        truth=truth,
        profiles=tuple(profiles),
        ambiguous=frozenset(),
        horizon=horizon,
        warmup_end=cut,
    )


def _truth_profiles(
    cfg: ScenarioConfig, rng: random.Random, ktype: str
) -> tuple[list[SourceProfile], str | None, str | None]:
    """The truth family's sources: ``unreliable_fraction`` of them unreliable, two of those a
    copying pair (the follower repeats the leader). Returns (profiles, leader, follower)."""
    fleet = [f"{_ROLES[i % len(_ROLES)]}-{i // len(_ROLES) + 1}" for i in range(cfg.fleet_size)]
    sources = sorted(rng.sample(fleet, cfg.sources_per_type))
    order = sources[:]
    rng.shuffle(order)
    unreliable = order[: round(cfg.unreliable_fraction * len(sources))]
    leader, follower = (unreliable[0], unreliable[1]) if len(unreliable) >= 2 else (None, None)
    profiles = [
        SourceProfile(
            source=src,
            knowledge_type=ktype,
            reliable=src not in unreliable,
            accuracy=round(
                rng.uniform(
                    *(cfg.unreliable_accuracy if src in unreliable else cfg.reliable_accuracy)
                ),
                4,
            ),
            overconfident=src in unreliable,
            report_rate=cfg.claims_per_subject / len(sources),
            copies=leader if src == follower else None,
            copy_probability=cfg.copy_probability[0] if src == follower else 0.0,
        )
        for src in sources
    ]
    return profiles, leader, follower


def _truth_reports(
    cfg: ScenarioConfig,
    rng: random.Random,
    spec: Any,
    sources: list[str],
    by_source: dict[str, SourceProfile],
    start: float,
    value: str,
    decoy: str,
) -> dict[str, tuple[str, float]]:
    """Who reports one subject and what each says (claim, time): right with its accuracy,
    else an unreliable source prefers the shared decoy."""
    reporters = sorted(rng.sample(sources, cfg.claims_per_subject))
    said: dict[str, tuple[str, float]] = {}
    for src in reporters:
        prof = by_source[src]
        t = start + rng.uniform(0, cfg.episode_spread_hours * HOUR)
        if rng.random() < prof.accuracy:
            claim = value
        elif not prof.reliable and rng.random() < cfg.decoy_share:
            claim = decoy
        else:
            claim = rng.choice([c for c in spec.claims if c != value])
        said[src] = (claim, t)
    return said


def _truth_at(timeline: Sequence[tuple[float, str]], at: float) -> str:
    pos = bisect.bisect_right([start for start, _ in timeline], at) - 1
    return timeline[max(pos, 0)][1]
