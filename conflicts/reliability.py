"""Source reliability re-estimated from all the evidence (``conflicts.engine.truth``).

``refresh_trust(knowledge_type)`` turns the type's recent items (active and superseded: a
superseded claim is still a claim), the people's decisions (``Resolution`` rows decided
by a human: each item in their inputs is labelled won / lost) and the observed outcomes (the
claims of the type's ``observed_by`` sources label their subjects, weighing less than a
person's decision) into engine inputs, runs the
EM (``estimate_trust``) and stores the estimate in the ``SourceTrust`` rows (alpha, beta;
pins are kept and still override). ``sweep_conflicts`` calls it before re-evaluating the
unsettled conflicts, so trust learned from new evidence reaches yesterday's pending conflicts.
Between two refreshes, each resolution still nudges the rows as before
(``conflicts.engine.trust``); the next refresh replaces that approximation.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from conflicts.choices import Actor, Decision
from conflicts.engine.candidates import Candidate, ItemId
from conflicts.engine.truth import Estimate, estimate_trust
from conflicts.models import Resolution, SourceTrust
from knowledge.choices import ItemStatus
from knowledge.models import KnowledgeItem
from knowledge.registry import registry

#: The evidence window and size of one estimate (newest first).
WINDOW_DAYS = 60
MAX_ITEMS = 20_000


def _labels(knowledge_type: str, items: dict[int, KnowledgeItem]) -> dict[ItemId, bool]:
    """Item id -> whether its claim won a person's decision (the newest decision counts)."""
    labels: dict[ItemId, bool] = {}
    rows = Resolution.objects.filter(
        conflict__knowledge_type=knowledge_type,
        actor=Actor.HUMAN,
        decision__in=[Decision.PICK, Decision.ACCEPT, Decision.REJECT],
    ).order_by("pk")
    for res in rows.values("winner_claim", "inputs"):
        for snap in res["inputs"] or []:
            item = items.get(snap.get("item_id"))
            # A revised item (same id, new claim) is no longer what was decided on.
            if item is not None and item.claim == snap.get("claim"):
                labels[item.pk] = bool(res["winner_claim"]) and snap["claim"] == res["winner_claim"]
    return labels


def _observations(
    knowledge_type: str, items: list[KnowledgeItem]
) -> dict[ItemId, tuple[bool, float]]:
    """Outcome-grounded labels: for each subject on which a source of the type's
    ``observed_by`` (registry) reports what it observed, each source's newest item on the
    subject -> (whether its claim is the observed one, the observation's strength). The observed claim is
    the one the observers' newest items back with the most confidence; its strength is that
    confidence minus what backs the other claims (observers that disagree cancel out)."""
    kt = registry.get(knowledge_type)
    observers = set(kt.observed_by) if kt is not None else set()
    if not observers:
        return {}
    newest: dict[tuple[str, str], KnowledgeItem] = {}
    for item in items:  # newest first
        if item.source.name in observers:
            newest.setdefault((item.subject, item.source.name), item)
    backing: dict[str, dict[str, float]] = {}
    for (subject, _), item in newest.items():
        claims = backing.setdefault(subject, {})
        claims[item.claim] = claims.get(item.claim, 0.0) + min(max(item.confidence, 0.0), 1.0)
    observed: dict[str, tuple[str, float]] = {}
    for subject, claims in backing.items():
        claim = max(sorted(claims), key=claims.__getitem__)
        strength = min(1.0, 2 * claims[claim] - sum(claims.values()))
        if strength > 0:
            observed[subject] = (claim, strength)
    out: dict[ItemId, tuple[bool, float]] = {}
    seen: set[tuple[str, int]] = set()
    for item in items:  # newest first: each source's current claim on the subject
        if item.subject in observed and (item.subject, item.source_id) not in seen:
            seen.add((item.subject, item.source_id))
            claim, strength = observed[item.subject]
            out[item.pk] = (item.claim == claim, strength)
    return out


def _stale(items: list[KnowledgeItem], observations: dict[ItemId, tuple[bool, float]]) -> set:
    """Items on an observed subject that their source has since replaced with a newer claim:
    the outcome is compared with what each source says now, not with what it said before the
    evidence changed (a revised claim is stale, not wrong), so they leave the estimate."""
    subjects = {i.subject for i in items if i.pk in observations}
    return {i.pk for i in items if i.subject in subjects and i.pk not in observations}


def refresh_trust(knowledge_type: str, now: datetime | None = None) -> Estimate | None:
    """Re-estimate every source's trust for ``knowledge_type``; None if there is nothing to
    learn from. One transaction; trust rows are locked in id order (the documented order)."""
    from conflicts.actions import candidates_for, conflict_settings, copy_estimator, trusts_for

    now = now or timezone.now()
    cfg = conflict_settings()
    items = list(
        KnowledgeItem.objects.select_related("source")
        .filter(
            knowledge_type=knowledge_type,
            status__in=[ItemStatus.ACTIVE, ItemStatus.SUPERSEDED],
            observed_at__gte=now - timedelta(days=WINDOW_DAYS),
        )
        .order_by("-observed_ts", "-id")[:MAX_ITEMS]
    )
    if not items:
        return None
    labels = _labels(knowledge_type, {i.pk: i for i in items})
    observations = _observations(knowledge_type, items)
    if observations:  # a person's decision on a stale item still counts
        stale = _stale(items, observations) - labels.keys()
        items = [i for i in items if i.pk not in stale]
    workers = {i.source_id: i.source for i in items}
    trusts = trusts_for(workers.values(), knowledge_type)
    # Copy weights are per subject (a copy repeats a claim on the same subject).
    cands = candidates_for(items, now, replace(cfg, copy_detection=False))
    if cfg.copy_detection:
        estimator = copy_estimator()
        groups: dict[str, list[Candidate]] = {}
        for c in cands:
            groups.setdefault(c.subject, []).append(c)
        cands = [c for group in groups.values() for c in estimator.with_independence(group)]
    estimate = estimate_trust(
        cands,
        labels,
        {workers[wid].name: t for wid, t in trusts.items()},
        observations=observations,
    )
    ids = {w.name: wid for wid, w in workers.items()}
    with transaction.atomic():
        for wid in sorted(ids.values()):
            SourceTrust.objects.get_or_create(worker_id=wid, knowledge_type=knowledge_type)
        rows = {
            r.worker_id: r
            for r in SourceTrust.objects.select_for_update()
            .filter(worker_id__in=ids.values(), knowledge_type=knowledge_type)
            .order_by("pk")
        }
        for name, trust in estimate.trusts.items():
            row = rows[ids[name]]
            row.alpha, row.beta, row.spread, row.updated_at = (
                trust.alpha,
                trust.beta,
                trust.spread,
                now,
            )
            row.save(update_fields=["alpha", "beta", "spread", "updated_at"])
    return estimate


def types_due() -> list[str]:
    """Types whose trust should be re-estimated now: those with unsettled contradictions, and
    those with a resolution newer than their last estimate (trust moved)."""
    from django.db.models import Max

    from conflicts.choices import Classification
    from conflicts.models import Conflict

    due = set(
        Conflict.objects.filter(classification=Classification.CONTRADICTION)
        .unsettled()
        .values_list("knowledge_type", flat=True)
        .distinct()
    )
    estimated = dict(
        SourceTrust.objects.values("knowledge_type")
        .annotate(last=Max("updated_at"))
        .values_list("knowledge_type", "last")
    )
    decided = (
        Resolution.objects.values("conflict__knowledge_type")
        .annotate(last=Max("created_at"))
        .values_list("conflict__knowledge_type", "last")
    )
    for ktype, last in decided:
        if ktype not in estimated or last >= estimated[ktype]:
            due.add(ktype)
    return sorted(due)


def sweep(now: datetime | None = None) -> int:
    """The periodic sweep: re-estimate the trust of the types that need it (``types_due``),
    then ``actions.sweep_conflicts`` with the new estimates; returns how many conflicts were
    re-evaluated."""
    from conflicts.actions import sweep_conflicts

    now = now or timezone.now()
    for knowledge_type in types_due():
        refresh_trust(knowledge_type, now)
    return sweep_conflicts(now)
