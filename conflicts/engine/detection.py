"""Conflict detection: how a newly stored item relates to the active items of its subject.

``classify(new, existing, mismatch_threshold)`` is a pure function; the caller (the broadcast
action, inside its transaction) passes the *active* items of the same knowledge type and
subject, and stores what comes back. Contract:

* Only items of the same knowledge type (when both say) and the same subject are compared;
  anything else in ``existing`` is ignored, as is the new item itself (same ``item_id``).
* The same source never conflicts with itself: the caller refreshes (replaces) that source's
  own earlier item instead, so its items are skipped here.
* Same claim, confidences differing by more than ``mismatch_threshold``:
  ``confidence_mismatch``. Same claim otherwise: ``corroboration``. Different claim:
  ``contradiction``.
* Claims and subjects are compared after ``normalise`` (the registry's normalisation:
  whitespace collapsed, lower-cased), so a caller that forgot to normalise still gets the
  right answer.
* The result keeps the order of ``existing``: a list of ``(kind, other_item_id)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Protocol

from .candidates import ItemId


class ConflictKind(StrEnum):
    CORROBORATION = "corroboration"
    CONFIDENCE_MISMATCH = "confidence_mismatch"
    CONTRADICTION = "contradiction"


class Comparable(Protocol):
    """What detection needs of an item (``Candidate`` qualifies, so do ORM rows)."""

    item_id: ItemId
    source: str
    claim: str
    confidence: float
    subject: str


def normalise(value: object) -> str:
    """The registry's normalisation of subjects and claims (``knowledge.registry.normalise``
    for strings): whitespace collapsed, lower-cased."""
    return " ".join(str(value).split()).lower()


def classify(
    new: Comparable, existing: Iterable[Comparable], mismatch_threshold: float
) -> list[tuple[ConflictKind, ItemId]]:
    """Kinds of relation between ``new`` and each relevant item of ``existing``."""
    if not 0.0 <= mismatch_threshold <= 1.0:
        raise ValueError("mismatch_threshold must be within 0..1")
    new_type = getattr(new, "knowledge_type", "")
    new_subject = normalise(new.subject)
    new_claim = normalise(new.claim)
    found: list[tuple[ConflictKind, ItemId]] = []
    for other in existing:
        other_type = getattr(other, "knowledge_type", "")
        if new_type and other_type and other_type != new_type:
            continue
        if other.item_id == new.item_id or other.source == new.source:
            continue
        if normalise(other.subject) != new_subject:
            continue
        if normalise(other.claim) != new_claim:
            kind = ConflictKind.CONTRADICTION
        elif abs(other.confidence - new.confidence) > mismatch_threshold:
            kind = ConflictKind.CONFIDENCE_MISMATCH
        else:
            kind = ConflictKind.CORROBORATION
        found.append((kind, other.item_id))
    return found
