"""The knowledge type registry.

One ``KnowledgeType`` per type: the JSON schema of its payload, its decay time, which
workers broadcast it and which are interested, and how to derive the item's ``subject``
(what the claim is about) and ``claim`` (its normalised value) from the payload. Those two
keys are what conflict detection compares.

New types are registered from any app (``registry.register(KnowledgeType(...))`` in its
``AppConfig.ready``) without touching the core.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta

import jsonschema_rs
from jsonschema import Draft202012Validator

HOUR = 3600.0
DAY = 24 * HOUR

SCORE = {"type": "number", "minimum": 0, "maximum": 1}
COUNT = {"type": "integer", "minimum": 0}
TEXT = {"type": "string", "minLength": 1, "maxLength": 500}


def _enum(*values: str) -> dict:
    return {"type": "string", "enum": list(values)}


def _schema(required: dict, optional: dict | None = None) -> dict:
    return {
        "type": "object",
        "properties": {**required, **(optional or {})},
        "required": list(required),
        "additionalProperties": True,
    }


# Keywords whose meaning jsonschema (Python) and jsonschema_rs implement alike for JSON data
# (no regex dialects, no formats, no references): a schema built only from them gets the fast
# validity check (``KnowledgeType.validate``); any other schema is checked in Python alone.
FAST_KEYWORDS = frozenset(
    {
        "type", "properties", "required", "additionalProperties", "enum", "const",
        "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
        "minLength", "maxLength", "items", "minItems", "maxItems",
        "minProperties", "maxProperties", "title", "description", "default", "examples",
    }
)  # fmt: skip


def _fast_validator(schema: object):
    """jsonschema_rs's validator for ``schema`` if it uses only ``FAST_KEYWORDS``, else None."""

    def plain(node: object, keyword_level: bool) -> bool:
        if isinstance(node, list):
            return all(plain(n, True) for n in node)
        if not isinstance(node, dict):
            return True
        if keyword_level and not FAST_KEYWORDS.issuperset(node):
            return False
        return all(
            # the names under "properties" are not keywords; enum/const/... hold data
            plain(v, not (keyword_level and k == "properties"))
            if k not in ("enum", "const", "default", "examples")
            else True
            for k, v in node.items()
        )

    if not plain(schema, True):
        return None
    return jsonschema_rs.Draft202012Validator(schema)


def as_text(value: object) -> str:
    """A payload value as text, whitespace collapsed, case kept (the subject as sent)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return " ".join(str(value).split())


def normalise(value: object) -> str:
    """Normalise a payload value for subject/claim comparison (``as_text``, lowercased)."""
    return as_text(value).lower()


class PayloadError(ValueError):
    """The payload does not satisfy the type's schema; ``errors`` maps field -> message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class KnowledgeType:
    name: str
    description: str
    schema: dict
    decay: timedelta
    broadcast_by: tuple[str, ...]
    interested: tuple[str, ...]
    subject_fields: tuple[str, ...]
    claim_fields: tuple[str, ...] = ()
    # Optional derivation when the claim is not a plain field (e.g. a bucketed score).
    claim_fn: Callable[[dict], str] | None = None
    claim_description: str = ""
    persistence: str = "persistent"  # persistent | ephemeral (pruned after 5 decay times)
    propagation: str = "interested"  # interested | broadcast (every worker's inbox)
    # Same claim, confidences further apart than this: a confidence_mismatch conflict.
    mismatch_threshold: float = 0.4
    # Auto-resolve when the strategy's margin is at least this; None = the global default.
    auto_resolve_threshold: float | None = None
    # Default conflict strategy for the hybrid resolver's per-type weighting.
    strategy: str = "hybrid"
    # Sources whose items of this type report observed outcomes, not opinions: the conflicts'
    # trust estimate takes their claims as outcome-grounded labels (docs/conflicts.md §3a).
    observed_by: tuple[str, ...] = ()
    _validator: Draft202012Validator = field(init=False, repr=False, compare=False)
    _fast: object = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        Draft202012Validator.check_schema(self.schema)
        object.__setattr__(self, "_validator", Draft202012Validator(self.schema))
        object.__setattr__(self, "_fast", _fast_validator(self.schema))

    @property
    def decay_seconds(self) -> float:
        return self.decay.total_seconds()

    def validate(self, payload: object) -> None:
        """Raise PayloadError naming each failing field.

        A valid payload is recognised by jsonschema_rs (~100x faster than the Python
        validator, which was a quarter of a bulk broadcast's CPU: docs/performance.md);
        the errors of an invalid one always come from the Python validator, so their
        messages are the same as before."""
        if self._fast is not None:
            try:
                if self._fast.is_valid(payload):
                    return
            except (ValueError, TypeError):  # not plain JSON data: the Python path decides
                pass
        errors: dict[str, str] = {}
        for error in sorted(self._validator.iter_errors(payload), key=lambda e: list(e.path)):
            if error.validator == "required":
                missing = error.message.split("'")[1] if "'" in error.message else "payload"
                errors[f"payload.{missing}"] = "This field is required."
                continue
            where = ".".join(str(p) for p in error.path)
            errors[f"payload.{where}" if where else "payload"] = error.message
        if errors:
            raise PayloadError(errors)

    def subject_of(self, payload: dict) -> str:
        """The normalised subject: what matching compares (refresh, conflicts, ``subject=``)."""
        return " | ".join(normalise(payload[f]) for f in self.subject_fields)[:255]

    def subject_as_sent(self, payload: dict) -> str:
        """The subject with the case it was sent in (what clients are shown)."""
        return " | ".join(as_text(payload[f]) for f in self.subject_fields)[:255]

    def claim_of(self, payload: dict) -> str:
        if self.claim_fn is not None:
            return normalise(self.claim_fn(payload))[:255]
        return " | ".join(normalise(payload[f]) for f in self.claim_fields)[:255]

    def freshness(self, age_seconds: float) -> float:
        return math.exp(-max(age_seconds, 0.0) / self.decay_seconds)

    def max_age_for(self, min_freshness: float) -> float:
        """Largest age (seconds) whose freshness is still >= min_freshness."""
        if min_freshness <= 0:
            return math.inf
        return -math.log(min_freshness) * self.decay_seconds

    def describe(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "decay_seconds": self.decay_seconds,
            "broadcast_by": list(self.broadcast_by),
            "interested": list(self.interested),
            "persistence": self.persistence,
            "propagation": self.propagation,
            "subject_fields": list(self.subject_fields),
            "claim_fields": list(self.claim_fields),
            "claim_derivation": self.claim_description or None,
            "mismatch_threshold": self.mismatch_threshold,
            "auto_resolve_threshold": self.auto_resolve_threshold,
            "observed_by": list(self.observed_by),
            "schema": self.schema,
        }


class Registry:
    def __init__(self) -> None:
        self._types: dict[str, KnowledgeType] = {}
        self.version = 0  # changes with every (un)registration: a key for what depends on it

    def register(self, kt: KnowledgeType, *, replace: bool = False) -> KnowledgeType:
        if kt.name in self._types and not replace:
            raise ValueError(f"knowledge type {kt.name!r} is already registered")
        self._types[kt.name] = kt
        self.version += 1
        return kt

    def unregister(self, name: str) -> None:
        self._types.pop(name, None)
        self.version += 1

    def get(self, name: str) -> KnowledgeType | None:
        return self._types.get(name)

    def __getitem__(self, name: str) -> KnowledgeType:
        return self._types[name]

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def names(self) -> list[str]:
        return sorted(self._types)

    def all(self) -> list[KnowledgeType]:
        return [self._types[n] for n in self.names()]

    def interests_of(self, worker_name: str) -> set[str]:
        return {kt.name for kt in self._types.values() if worker_name in kt.interested}

    def broadcast_types(self) -> set[str]:
        return {kt.name for kt in self._types.values() if kt.propagation == "broadcast"}

    def decay_of(self, name: str) -> float:
        kt = self._types.get(name)
        return kt.decay_seconds if kt else DEFAULT_DECAY_SECONDS

    def max_ages(self, names: Iterable[str], min_freshness: float) -> dict[str, float]:
        return {n: self[n].max_age_for(min_freshness) for n in names if n in self._types}


DEFAULT_DECAY_SECONDS = 7 * DAY

registry = Registry()


def _hit_rate_bucket(payload: dict) -> str:
    rate = float(payload["hit_rate"])
    return "low" if rate < 1 / 3 else ("high" if rate >= 2 / 3 else "medium")


BUILTIN_TYPES = [
    KnowledgeType(
        name="risk_pattern",
        description="A pattern of code or change that carries risk, with its level.",
        schema=_schema(
            {"pattern": TEXT, "risk_level": _enum("low", "medium", "high", "critical")},
            {"risk_score": SCORE, "evidence": {"type": "string"}, "samples": COUNT},
        ),
        decay=timedelta(days=7),
        broadcast_by=("think", "analysis"),
        interested=("think", "learning"),
        subject_fields=("pattern",),
        claim_fields=("risk_level",),
        # Learning states risk from what the observed changes did (workers/engine/learning.py).
        observed_by=("learning",),
    ),
    KnowledgeType(
        name="decision_outcome",
        description="A decision taken on a proposal and its predicted probability of success.",
        schema=_schema(
            {
                "proposal": TEXT,
                "decision": _enum("execute", "approve", "defer", "reject"),
                "predicted_success": SCORE,
            },
            {"rule": {"type": "string"}, "outcome": _enum("success", "failure", "unknown")},
        ),
        decay=timedelta(days=3),
        broadcast_by=("think",),
        interested=("learning",),
        subject_fields=("proposal",),
        claim_fields=("decision",),
    ),
    KnowledgeType(
        name="successful_fix",
        description="A fix that resolved an issue of a rule at a target.",
        schema=_schema(
            {"rule": TEXT, "target": TEXT, "fix": TEXT},
            {"improvement": SCORE},
        ),
        decay=timedelta(days=14),
        broadcast_by=("learning", "dream"),
        interested=("dream", "think"),
        subject_fields=("rule", "target"),
        claim_fields=("fix",),
    ),
    KnowledgeType(
        name="issue_pattern",
        description="An issue found by a rule at a location, with its severity.",
        schema=_schema(
            {"rule": TEXT, "location": TEXT, "severity": _enum("low", "medium", "high")},
            {
                "fingerprint": {"type": "string"},
                "metric": {"type": "number"},
                "threshold": {"type": "number"},
            },
        ),
        decay=timedelta(days=5),
        broadcast_by=("analysis",),
        interested=("think", "dream"),
        subject_fields=("rule", "location"),
        claim_fields=("severity",),
    ),
    KnowledgeType(
        name="pattern_evolution",
        description="How often a pattern occurs over time: emerging, stable or declining.",
        schema=_schema(
            {"pattern": TEXT, "trend": _enum("emerging", "stable", "declining")},
            {"rate": {"type": "number"}, "window": COUNT},
        ),
        decay=timedelta(days=30),
        broadcast_by=("learning",),
        interested=("think", "analysis"),
        subject_fields=("pattern",),
        claim_fields=("trend",),
    ),
    KnowledgeType(
        name="learned_pattern",
        description="What was learned about a pattern from observed outcomes.",
        schema=_schema(
            {
                "pattern": TEXT,
                "effect": _enum("effective", "ineffective", "mixed"),
                "success_rate": SCORE,
                "samples": COUNT,
            },
            {"recommendation": {"type": "string"}, "threshold": {"type": "number"}},
        ),
        decay=timedelta(days=14),
        broadcast_by=("learning",),
        interested=("think", "analysis", "dream"),
        subject_fields=("pattern",),
        claim_fields=("effect",),
    ),
    KnowledgeType(
        name="proposal_quality",
        description="The quality of a kind of proposal for a rule.",
        schema=_schema(
            {"proposal_kind": TEXT, "rule": TEXT, "quality": _enum("high", "medium", "low")},
            {"score": SCORE},
        ),
        decay=timedelta(days=7),
        broadcast_by=("dream",),
        interested=("dream", "think"),
        subject_fields=("proposal_kind", "rule"),
        claim_fields=("quality",),
    ),
    KnowledgeType(
        name="context_enrichment",
        description="Context about a target (churn, age, past fixes...).",
        schema=_schema(
            {"target": TEXT, "aspect": TEXT, "value": {"type": "string", "maxLength": 500}},
            {"relevance": SCORE},
        ),
        decay=timedelta(hours=6),
        broadcast_by=("recall",),
        interested=("recall", "think"),
        subject_fields=("target", "aspect"),
        claim_fields=("value",),
    ),
    KnowledgeType(
        name="knowledge_retrieval",
        description="How well a retrieval query performed.",
        schema=_schema(
            {"query": TEXT, "hit_rate": SCORE},
            {"latency_ms": {"type": "number", "minimum": 0}, "results": COUNT},
        ),
        decay=timedelta(days=1),
        broadcast_by=("recall",),
        interested=("recall",),
        subject_fields=("query",),
        claim_fn=_hit_rate_bucket,
        claim_description="hit_rate bucket: low (< 1/3), medium, high (>= 2/3)",
    ),
    KnowledgeType(
        name="complexity_trend",
        description="The direction of code complexity in a scope.",
        schema=_schema(
            {"scope": TEXT, "direction": _enum("increasing", "stable", "decreasing")},
            {"avg_complexity": {"type": "number", "minimum": 0}, "delta": {"type": "number"}},
        ),
        decay=timedelta(days=7),
        broadcast_by=("analysis",),
        interested=("dream",),
        subject_fields=("scope",),
        claim_fields=("direction",),
    ),
]

for _kt in BUILTIN_TYPES:
    registry.register(_kt)
