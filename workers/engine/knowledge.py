"""Knowledge items as the engine sees them: drafts to broadcast, items received, payload contracts.

The engine never talks to the exchange. It returns :class:`Draft` objects (the body of a
broadcast: type, payload, confidence, urgency) and accepts received knowledge as any iterable of

- :class:`Draft` objects, or
- dicts shaped like the exchange's items: ``{"knowledge_type": ..., "payload": {...},
  "confidence": 0.8, "freshness": 0.9, ...}`` (confidence and freshness default to 1).

``KNOWLEDGE_CONTRACTS`` mirrors ``/work/notes/types.md`` (the server's registry is the authority);
:func:`validate_payload` lets tests prove every payload the engine builds meets it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

URGENCIES = ("low", "normal", "high", "critical")

# field -> spec; spec is "str", "int>=0", "number", "number>=0", "0..1" or a tuple of choices.
_Spec = str | tuple[str, ...]


@dataclass(frozen=True)
class Contract:
    required: Mapping[str, _Spec]
    optional: Mapping[str, _Spec]
    subject: tuple[str, ...]
    claim: str


KNOWLEDGE_CONTRACTS: Mapping[str, Contract] = {
    "risk_pattern": Contract(
        {"pattern": "str", "risk_level": ("low", "medium", "high", "critical")},
        {"risk_score": "0..1", "evidence": "str", "samples": "int>=0"},
        ("pattern",),
        "risk_level",
    ),
    "decision_outcome": Contract(
        {
            "proposal": "str",
            "decision": ("execute", "approve", "defer", "reject"),
            "predicted_success": "0..1",
        },
        {"rule": "str", "outcome": ("success", "failure", "unknown")},
        ("proposal",),
        "decision",
    ),
    "successful_fix": Contract(
        {"rule": "str", "target": "str", "fix": "str"},
        {"improvement": "0..1"},
        ("rule", "target"),
        "fix",
    ),
    "issue_pattern": Contract(
        {"rule": "str", "location": "str", "severity": ("low", "medium", "high")},
        {"fingerprint": "str", "metric": "number", "threshold": "number"},
        ("rule", "location"),
        "severity",
    ),
    "pattern_evolution": Contract(
        {"pattern": "str", "trend": ("emerging", "stable", "declining")},
        {"rate": "number", "window": "int>=0"},
        ("pattern",),
        "trend",
    ),
    "learned_pattern": Contract(
        {
            "pattern": "str",
            "effect": ("effective", "ineffective", "mixed"),
            "success_rate": "0..1",
            "samples": "int>=0",
        },
        {"recommendation": "str", "threshold": "number"},
        ("pattern",),
        "effect",
    ),
    "proposal_quality": Contract(
        {"proposal_kind": "str", "rule": "str", "quality": ("high", "medium", "low")},
        {"score": "0..1"},
        ("proposal_kind", "rule"),
        "quality",
    ),
    "context_enrichment": Contract(
        {"target": "str", "aspect": "str", "value": "str"},
        {"relevance": "0..1"},
        ("target", "aspect"),
        "value",
    ),
    "knowledge_retrieval": Contract(
        {"query": "str", "hit_rate": "0..1"},
        {"latency_ms": "number>=0", "results": "int>=0"},
        ("query",),
        "hit_rate",
    ),
    "complexity_trend": Contract(
        {"scope": "str", "direction": ("increasing", "stable", "decreasing")},
        {"avg_complexity": "number>=0", "delta": "number"},
        ("scope",),
        "direction",
    ),
}


@dataclass(frozen=True)
class Draft:
    """A knowledge item to broadcast: the engine's output unit."""

    knowledge_type: str
    payload: Mapping[str, Any]
    confidence: float
    urgency: str = "normal"

    def as_dict(self) -> dict[str, Any]:
        """The broadcast body (``targets``/``idempotency_key`` are the caller's business)."""
        return {
            "knowledge_type": self.knowledge_type,
            "payload": dict(self.payload),
            "confidence": self.confidence,
            "urgency": self.urgency,
        }


def draft(
    knowledge_type: str, payload: Mapping[str, Any], confidence: float, urgency: str = "normal"
) -> Draft:
    """Build a draft with confidence clamped to [0, 1] and rounded (stable output)."""
    return Draft(knowledge_type, payload, round(min(1.0, max(0.0, confidence)), 4), urgency)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check(name: str, spec: _Spec, value: Any) -> str | None:
    if isinstance(spec, tuple):
        return None if value in spec else f"{name}: {value!r} not in {spec}"
    if spec == "str":
        return None if isinstance(value, str) and value.strip() else f"{name}: not a string"
    if spec == "int>=0":
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        return None if ok else f"{name}: not an int >= 0"
    if not _is_number(value):
        return f"{name}: not a number"
    if spec == "0..1" and not 0 <= value <= 1:
        return f"{name}: {value} outside 0..1"
    if spec == "number>=0" and value < 0:
        return f"{name}: {value} < 0"
    return None


def validate_payload(knowledge_type: str, payload: Mapping[str, Any]) -> list[str]:
    """Contract violations of a payload (empty list when valid)."""
    contract = KNOWLEDGE_CONTRACTS.get(knowledge_type)
    if contract is None:
        return [f"unknown knowledge type {knowledge_type!r}"]
    errors = []
    for name, spec in contract.required.items():
        if name not in payload:
            errors.append(f"{name}: required")
        elif (error := _check(name, spec, payload[name])) is not None:
            errors.append(error)
    for name, spec in contract.optional.items():
        if name in payload and (error := _check(name, spec, payload[name])) is not None:
            errors.append(error)
    return errors


def subject_of(knowledge_type: str, payload: Mapping[str, Any]) -> str:
    """The subject as the registry derives it (fields joined by a space, lowercased, stripped)."""
    contract = KNOWLEDGE_CONTRACTS[knowledge_type]
    return " ".join(str(payload[f]).strip().lower() for f in contract.subject)


def iter_payloads(
    items: Iterable[Any], knowledge_type: str
) -> Iterator[tuple[Mapping[str, Any], float]]:
    """Yield ``(payload, weight)`` for the items of one type; weight = confidence * freshness.

    Items of other types and malformed items are skipped silently: received knowledge is input
    from other processes and must never crash a worker.
    """
    kind: Any
    payload: Any
    for item in items:
        if isinstance(item, Draft):
            kind, payload, weight = item.knowledge_type, item.payload, item.confidence
        elif isinstance(item, Mapping):
            kind, payload = item.get("knowledge_type"), item.get("payload")
            try:
                weight = float(item.get("confidence", 1.0)) * float(item.get("freshness", 1.0))
            except (TypeError, ValueError):
                continue
        else:
            continue
        if kind == knowledge_type and isinstance(payload, Mapping):
            yield payload, weight
