"""Conflict detection, resolution, flagging and trust learning (every write of the app).

``detect_conflicts(batch)`` is this app's receiver of the core's one hook,
``knowledge.hooks.items_stored`` (connected in ``ConflictsConfig.ready``): it runs inside
the broadcast transaction, after the items are stored and before their
``knowledge_broadcast`` events are published. The core never imports this app. People resolve
through ``do_resolve`` (API, admin, dashboard alike); workers flag with ``do_flag_conflict``
and ask for a decision with ``do_request_resolution``.

Locking (PostgreSQL). Every action that publishes here first takes the event log's tail lock
(the transaction-scoped advisory lock ``publish_event`` takes anyway a few statements later),
then the conflict row, then item rows, then trust rows in id order:

- Taking the tail lock *before* reading the subject's active items serialises detection: of
  two concurrent broadcasts on one subject the second reads the first one's committed item
  (READ COMMITTED gives each statement a fresh snapshot), so two contradicting broadcasts
  produce exactly one conflict, never zero or two (a partial unique index backs this up).
- A transaction waiting for the tail lock may already hold item rows (a broadcast locks its
  source's own item before detection; a validation locks its item). So after the tail lock,
  item rows are locked with ``SKIP LOCKED`` and never waited for: if a competing item is
  locked by an in-flight transaction, detection does not auto-apply now (that transaction is
  a broadcast on the same subject and re-evaluates the conflict right after; the sweep
  catches the rest), and ``do_resolve`` retries a few times, then answers 409. Waiting
  there would deadlock.

The cost: detection (two or three indexed queries) joins the already serialised tail of
publishing transactions. On SQLite writers are serialised by the database (``BEGIN
IMMEDIATE``) and none of this is needed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from config.product import product_settings
from conflicts import contested
from conflicts.choices import (
    UNSETTLED,
    Actor,
    Classification,
    ConflictStatus,
    Decision,
    ItemRole,
)
from conflicts.engine.candidates import Candidate, Proposal, Trust
from conflicts.engine.detection import ConflictKind, classify
from conflicts.engine.independence import CopyEstimator
from conflicts.engine.strategies import Strategy, get_strategy
from conflicts.engine.trust import (
    DEFAULT_PARAMS,
    TrustUpdate,
    apply_updates,
    prior,
    resolution_updates,
)
from conflicts.models import Conflict, ConflictItem, Resolution, SourceTrust
from identity.models import Worker
from knowledge import cache as knowledge_cache
from knowledge.choices import EventKind, ItemStatus
from knowledge.errors import ActionError
from knowledge.events import (
    lock_log_tail,
    publish_events,
    snapshot_ordering,
    subject_lock_statement,
)
from knowledge.hooks import StoredItem
from knowledge.models import KnowledgeItem
from knowledge.registry import KnowledgeType, registry
from knowledge.sql import execute_together, quoted, sql_in
from knowledge.visibility import audience_from_rows, event_visibility, item_audience

log = logging.getLogger(__name__)

ENGINE_ACTOR = "engine"
SYSTEM_ACTOR = "system"


# --- Settings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConflictSettings:
    enabled: bool
    strategy: str
    threshold: float
    auto_resolve: bool
    settle_seconds: float
    copy_detection: bool


def conflict_settings() -> ConflictSettings:
    ke = settings.KNOWLEDGE_EXCHANGE
    return ConflictSettings(
        enabled=bool(ke.get("conflict_resolution_enabled", True)),
        strategy=str(ke.get("resolution_strategy", "hybrid")),
        threshold=float(ke.get("auto_resolve_threshold", 0.85)),
        auto_resolve=bool(ke.get("conflict_auto_resolve", True)),
        settle_seconds=float(ke.get("conflict_settle_seconds", 0)),
        copy_detection=bool(ke.get("conflict_copy_detection", True)),
    )


def threshold_for(knowledge_type: str, cfg: ConflictSettings | None = None) -> float:
    """The type's auto-resolve threshold, else ``KNOWLEDGE_EXCHANGE['auto_resolve_threshold']``."""
    cfg = cfg or conflict_settings()
    kt = registry.get(knowledge_type)
    if kt is not None and kt.auto_resolve_threshold is not None:
        return float(kt.auto_resolve_threshold)
    return cfg.threshold


_strategies: dict[str, Strategy] = {}


def strategy_named(name: str) -> Strategy:
    """One shared instance per strategy name (they are stateless)."""
    if name not in _strategies:
        _strategies[name] = get_strategy(name)
    return _strategies[name]


# --- Copy detection (in memory, rebuilt from stored items) ------------------------------------

COPY_REBUILD_DAYS = 30
COPY_REBUILD_MAX_ITEMS = 200_000
_copies_lock = threading.Lock()
_copies: CopyEstimator | None = None


def copy_estimator() -> CopyEstimator:
    """This process's copy statistics; built on first use from the last 30 days of items
    (at most the newest 200 000), before detection takes any lock.

    Each process keeps its own estimator and feeds it every item it stores; items stored by
    other processes are seen at the next rebuild (``reset_copy_estimator``). It only ever
    lowers the weight of suspected copies, so a stale estimator errs towards counting a copy.
    """
    global _copies
    with _copies_lock:
        if _copies is None:
            est = CopyEstimator()
            since = timezone.now() - timedelta(days=COPY_REBUILD_DAYS)
            rows = list(
                KnowledgeItem.objects.filter(observed_at__gte=since)
                .order_by("-observed_ts", "-id")
                .values_list("knowledge_type", "subject", "source__name", "claim", "observed_ts")[
                    :COPY_REBUILD_MAX_ITEMS
                ]
            )
            for ktype, subject, source, claim, ts in reversed(rows):
                est.observe(ktype, subject, source, claim, ts)
            _copies = est
        return _copies


def reset_copy_estimator(empty: bool = False) -> None:
    """Forget the in-memory copy statistics (rebuilt lazily; ``empty`` starts from nothing)."""
    global _copies
    with _copies_lock:
        _copies = CopyEstimator() if empty else None


# --- Trust ----------------------------------------------------------------------------------


def trusts_for(workers: Iterable[Worker], knowledge_type: str) -> dict[int, Trust]:
    """Effective trust per worker id for ``knowledge_type`` (Worker.trust_pin wins)."""
    workers = {w.pk: w for w in workers}
    rows = {
        r.worker_id: r
        for r in SourceTrust.objects.filter(worker_id__in=workers, knowledge_type=knowledge_type)
    }
    out: dict[int, Trust] = {}
    for wid, worker in workers.items():
        row = rows.get(wid)
        base = row.as_trust() if row else prior(DEFAULT_PARAMS)
        if worker.trust_pin is not None:
            base = replace(base, pinned=worker.trust_pin)
        out[wid] = base
    return out


def _apply_trust_updates(
    knowledge_type: str, by_name: dict[str, Worker], updates: Sequence[TrustUpdate]
) -> list[dict]:
    """Persist ``updates`` (locks the trust rows in id order); returns a JSON summary."""
    if not updates:
        return []
    worker_ids = sorted(by_name[u.source].pk for u in updates)
    for wid in worker_ids:
        SourceTrust.objects.get_or_create(worker_id=wid, knowledge_type=knowledge_type)
    rows = {
        r.worker_id: r
        for r in SourceTrust.objects.select_for_update()
        .filter(worker_id__in=worker_ids, knowledge_type=knowledge_type)
        .order_by("pk")
    }
    current = {name: rows[w.pk].as_trust() for name, w in by_name.items() if w.pk in rows}
    changed = apply_updates(current, updates, DEFAULT_PARAMS)
    now = timezone.now()
    summary = []
    for upd in updates:
        row = rows[by_name[upd.source].pk]
        before = row.alpha / (row.alpha + row.beta)
        new = changed[upd.source]
        row.alpha, row.beta, row.updated_at = new.alpha, new.beta, now
        if upd.won:
            row.wins += 1
        else:
            row.losses += 1
        row.save(update_fields=["alpha", "beta", "wins", "losses", "updated_at"])
        summary.append(
            {
                "source": upd.source,
                "won": upd.won,
                "weight": round(upd.weight, 6),
                "before": round(before, 6),
                "after": round(new.learned_mean, 6),
            }
        )
    return summary


# --- Candidates -----------------------------------------------------------------------------


def candidates_for(
    items: Sequence[KnowledgeItem], now: datetime, cfg: ConflictSettings
) -> list[Candidate]:
    """One engine ``Candidate`` per item (``source`` loaded): freshness now, trust, independence."""
    if not items:
        return []
    trusts = trusts_for({i.source_id: i.source for i in items}.values(), items[0].knowledge_type)
    cands = [
        Candidate(
            item_id=i.pk,
            source=i.source.name,
            claim=i.claim,
            confidence=min(max(i.confidence, 0.0), 1.0),
            freshness=min(max(i.freshness(now), 0.0), 1.0),
            observed_at=i.observed_ts or i.observed_at.timestamp(),
            trust=trusts[i.source_id],
            knowledge_type=i.knowledge_type,
            subject=i.subject,
        )
        for i in items
    ]
    if cfg.copy_detection:
        cands = copy_estimator().with_independence(cands)
    return cands


def _subject_items(knowledge_type: str, subject: str) -> list[KnowledgeItem]:
    # Read, not locked (see the module docstring): _lock_items before writing them.
    return list(
        KnowledgeItem.objects.select_related("source")
        .filter(
            knowledge_type=knowledge_type,
            subject=subject,
            status=ItemStatus.ACTIVE,
            # Untargeted items only: a targeted item is never compared automatically, so no
            # conflict mixes what everyone sees with what only some may (docs/security.md).
            is_targeted=False,
        )
        .order_by("pk")
    )


def _linked_active_items(conflict: Conflict) -> list[KnowledgeItem]:
    return list(
        KnowledgeItem.objects.select_related("source")
        .filter(conflict_links__conflict=conflict, status=ItemStatus.ACTIVE)
        .order_by("pk")
    )


def _lock_items(items: Sequence[KnowledgeItem]) -> bool:
    """Lock ``items`` without waiting; False if an in-flight transaction holds one of them."""
    ids = [i.pk for i in items]
    locked = set(
        KnowledgeItem.objects.select_for_update(skip_locked=True, no_key=True)
        .filter(pk__in=ids, status=ItemStatus.ACTIVE)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    return locked == set(ids)


class ItemsBusy(Exception):
    """A competing item is locked by an in-flight transaction; retry shortly."""


def _candidate_items(conflict: Conflict) -> list[KnowledgeItem]:
    """What a conflict is decided on: for a contradiction, every active item of the subject;
    otherwise the conflict's own items that are still active."""
    if conflict.classification == Classification.CONTRADICTION:
        return _subject_items(conflict.knowledge_type, conflict.subject)
    return _linked_active_items(conflict)


def _link(conflict: Conflict, items: Iterable[KnowledgeItem], role: str) -> None:
    have = set(conflict.links.values_list("item_id", flat=True))
    new = [ConflictItem(conflict=conflict, item=i, role=role) for i in items if i.pk not in have]
    if new:
        ConflictItem.objects.bulk_create(new)


def _conflicts_with_items(item_ids):
    return ConflictItem.objects.filter(item_id__in=item_ids).values("conflict_id")


def conflict_summary(conflict: Conflict) -> dict:
    """The conflict's state as every conflict event carries it (docs/api.md, "Conflict
    events"): status, the engine's proposal and its probability, the decision, the version."""
    proposal = conflict.proposal or {}
    scores = proposal.get("scores") or {}
    return {
        "id": conflict.pk,
        "knowledge_type": conflict.knowledge_type,
        "subject": conflict.subject,
        "classification": conflict.classification,
        "status": conflict.status,
        "strategy": conflict.strategy,
        "proposed_claim": conflict.proposed_claim,
        "probability": scores.get(conflict.proposed_claim) if conflict.proposed_claim else None,
        "margin": conflict.margin,
        "threshold": conflict.threshold,
        "proposal": {
            "winner_claim": proposal.get("winner_claim"),
            "winner_item_ids": proposal.get("winner_item_ids", []),
            "loser_item_ids": proposal.get("loser_item_ids", []),
            "scores": scores,
        }
        if proposal
        else None,
        "decision": conflict.decision or None,
        "decided_claim": conflict.decided_claim or None,
        "decided_by": conflict.decided_by or None,
        "opened_at": conflict.opened_at.isoformat(),
        "updated_at": conflict.updated_at.isoformat(),
        "resolved_at": conflict.resolved_at.isoformat() if conflict.resolved_at else None,
        "version": conflict.version,
    }


# --- Conflict events -------------------------------------------------------------------------
#
# Every transition of a conflict is an event (docs/api.md, "Conflict events"). Code that
# changes a conflict notes the transition (``_note``); the events are built when the
# action's work is done, from each conflict's state as it will commit, so an event never
# shows a state the conflict only passed through (a conflict opened and auto-resolved by one
# broadcast announces both, each with the final status, proposal and version). Inside a
# broadcast the receiver returns them to the pipeline, which publishes them right after the
# items' ``knowledge_broadcast`` events (knowledge/hooks.py); every other action publishes
# them at the end of its transaction.

#: transition -> event kind. ``opened`` / ``resolved`` / ``dismissed`` keep the kinds clients
#: already filter on; the changes of an unsettled conflict are ``conflict_updated``.
TRANSITION_KINDS = {
    "opened": EventKind.CONFLICT_DETECTED,
    "pending_review": EventKind.CONFLICT_UPDATED,
    "proposal_changed": EventKind.CONFLICT_UPDATED,
    "items_changed": EventKind.CONFLICT_UPDATED,
    "resolved": EventKind.KNOWLEDGE_RESOLVED,
    "dismissed": EventKind.KNOWLEDGE_RESOLVED,
}
_UPDATES = ("pending_review", "proposal_changed", "items_changed")


@dataclass
class _Noted:
    source: str
    transitions: list[tuple[str, dict]] = field(default_factory=list)


class _ConflictEvents:
    """The transitions noted during one action, per conflict, in the order first noted."""

    def __init__(self) -> None:
        self.noted: dict[int, _Noted] = {}

    def note(self, conflict: Conflict, transition: str, source: str, extra: dict) -> None:
        entry = self.noted.setdefault(conflict.pk, _Noted(source))
        entry.transitions.append((transition, extra))

    def specs(self) -> list[dict]:
        """One event spec per announced transition (``publish_events`` specs), from the
        conflicts' current rows: ``opened``, then one ``conflict_updated`` (several changes
        of a conflict still unsettled are one event, listed in ``changes``), then the
        decision. A conflict opened or decided in this action gets no separate update."""
        if not self.noted:
            return []
        rows = Conflict.objects.in_bulk(list(self.noted))
        specs = []
        for pk, entry in self.noted.items():
            conflict = rows[pk]
            names = [t for t, _ in entry.transitions]
            parties = _parties(conflict)
            for transition, extra in entry.transitions:
                if transition == "opened" or transition in ("resolved", "dismissed"):
                    specs.append(_spec(conflict, transition, entry.source, parties, extra))
            updates = [t for t in dict.fromkeys(names) if t in _UPDATES]
            if updates and not {"opened", "resolved", "dismissed"} & set(names):
                extra = {}
                for transition, more in entry.transitions:
                    if transition in _UPDATES:
                        extra.update(more)
                extra["changes"] = updates
                specs.append(_spec(conflict, updates[0], entry.source, parties, extra))
        return specs


_recording: ContextVar[_ConflictEvents | None] = ContextVar("conflict_events", default=None)


@contextmanager
def _recorded() -> Iterator[_ConflictEvents]:
    """Collect the transitions noted inside the block (the caller publishes them)."""
    recorder = _ConflictEvents()
    token = _recording.set(recorder)
    try:
        yield recorder
    finally:
        _recording.reset(token)


@contextmanager
def _publishing() -> Iterator[_ConflictEvents]:
    """Collect the transitions noted inside the block and publish them when it completes
    (use inside the action's ``transaction.atomic()``, after taking the tail lock)."""
    with _recorded() as recorder:
        yield recorder
        publish_events(recorder.specs())


def _note(conflict: Conflict, transition: str, source: str = ENGINE_ACTOR, **extra) -> None:
    recorder = _recording.get()
    if recorder is None:
        raise RuntimeError("a conflict changed outside an action that publishes its events")
    if not recorder.noted:
        # Which types have unsettled conflicts may change (conflicts/contested.py): forget it
        # now (this transaction's own reads) and again at commit (a reader that recomputed it
        # in between saw the state before this action). Once per action.
        contested.forget_unsettled_types()
        transaction.on_commit(contested.forget_unsettled_types)
    recorder.note(conflict, transition, source, extra)


@dataclass(frozen=True)
class _Parties:
    item_ids: list[int]
    workers: list[str]
    visibility: dict


def _parties(conflict: Conflict) -> _Parties:
    """The conflict's items, their sources and the event's audience (one query)."""
    rows = list(
        conflict.links.values_list(
            "item_id", "item__is_targeted", "item__source__name", "item__target_names"
        )
    )
    return _Parties(
        item_ids=sorted(r[0] for r in rows),
        workers=sorted({r[2] for r in rows}),
        visibility=event_visibility(audience_from_rows(r[1:] for r in rows)),
    )


def _spec(conflict: Conflict, transition: str, source: str, parties: _Parties, extra: dict):
    return {
        "kind": TRANSITION_KINDS[transition],
        "data": {
            "transition": transition,
            "conflict": conflict_summary(conflict),
            "item_ids": parties.item_ids,
            **extra,
            "workers": parties.workers,
        },
        "knowledge_type": conflict.knowledge_type,
        "source": source[:64],
        "targets": parties.visibility["targets"],
        "private": parties.visibility["private"],
    }


# --- Detection (inside the broadcast transaction) ------------------------------------------


def detect_conflicts(batch: Sequence[StoredItem]) -> list[dict]:
    """Detect what each item of ``batch`` conflicts with, and act on it (the receiver of
    ``knowledge.hooks.items_stored``; see its contract for when it runs and what it locks).

    Each item (just created / refreshed / revised) is compared with the active items of
    the same type and subject from other sources (never across subjects):

    - different claim: a ``contradiction``; opens the subject's conflict (or joins the
      unsettled one), then evaluates it: applied at once when the strategy's margin reaches
      the threshold (and the optional settle window has passed), else ``pending_review``;
    - same claim, confidences apart by more than the type's ``mismatch_threshold``: a
      ``confidence_mismatch`` conflict, for review (there is no claim to choose);
    - same claim otherwise: corroboration (no conflict).

    An item arriving on a subject with an unsettled contradiction always re-evaluates it
    (new evidence may settle it, or leave a single claim, which dissolves it).
    Returns the conflict events (``conflict_detected``, ``conflict_updated``,
    ``knowledge_resolved``, each with the conflict's state after the engine ran) for the
    pipeline to publish after the batch's ``knowledge_broadcast`` events. Sets ``stored.conflict_ids``
    to the ids of the conflicts each item is part of, and leaves the relations found on
    ``item.conflict_detections`` as ``[(kind, other_item_id)]`` (for instrumentation).

    One statement first finds the subjects where something else is active or a conflict is
    unsettled (``_busy_subjects``); an item alone on its subject, the common case, can
    neither conflict nor corroborate, so it only feeds the copy estimator, and only the busy
    subjects pay for the full detection (reading the subject's items and conflicts).
    """
    for stored in batch:
        stored.item.conflict_detections = []
    cfg = conflict_settings()
    if not cfg.enabled or not batch:
        return []
    if cfg.copy_detection:
        copy_estimator()  # a first-use rebuild must not run under the tail lock
    # Before reading the subjects: detections on one subject serialise (lock mode: the tail
    # lock; snapshot mode: the batch's subjects, then the tail only where a subject is busy,
    # since only there may detection lock conflict and trust rows; docs/architecture.md).
    # (The lock and the busy check go in one round trip: the check still reads after the lock.)
    lock = subject_lock_statement({(s.item.knowledge_type, s.item.subject) for s in batch})
    now = timezone.now()
    busy = _busy_subjects([s.item for s in batch], lock)
    if busy and snapshot_ordering():
        lock_log_tail()
    with _recorded() as recorder:
        for stored in batch:
            item = stored.item
            kt = registry.get(item.knowledge_type)
            if kt is None or item.is_targeted:  # private items are not compared (see above)
                continue
            if (item.knowledge_type, item.subject) in busy:
                stored.conflict_ids = _detect_one(item, kt, cfg, now)
            elif cfg.copy_detection:
                _observe_copy(item)
    return recorder.specs()


def _busy_subjects(
    items: Sequence[KnowledgeItem], lock: tuple[str, list] | None = None
) -> set[tuple[str, str]]:
    """(type, subject) pairs of ``items`` where another item is active or a conflict is
    unsettled: the only ones where detection can find anything. One statement, read as
    plain rows (it runs in every broadcast: docs/performance.md, "Single broadcast"), after
    the ``lock`` statement if one is given, in the same round trip (``execute_together``)."""
    types, t_params = sql_in(sorted({item.knowledge_type for item in items}))
    subjects, s_params = sql_in(sorted({item.subject for item in items}))
    ids, i_params = sql_in([item.pk for item in items])
    statuses, u_params = sql_in([str(status) for status in UNSETTLED])
    sql = (
        f"SELECT knowledge_type, subject FROM {quoted(KnowledgeItem)} WHERE status = %s "
        f"AND knowledge_type {types} AND subject {subjects} AND NOT (id {ids}) "
        f"UNION SELECT knowledge_type, subject FROM {quoted(Conflict)} "
        f"WHERE knowledge_type {types} AND subject {subjects} AND status {statuses}"
    )
    params = [str(ItemStatus.ACTIVE), *t_params, *s_params, *i_params]
    check = (sql, [*params, *t_params, *s_params, *u_params])
    with connection.cursor() as cur:
        return set(execute_together(cur, [lock, check] if lock else [check]))


def _observe_copy(item: KnowledgeItem) -> None:
    copy_estimator().observe(
        item.knowledge_type, item.subject, item.source.name, item.claim, item.observed_ts
    )


def _detect_one(
    item: KnowledgeItem, kt: KnowledgeType, cfg: ConflictSettings, now: datetime
) -> list[int]:
    """Detection for one item (the tail lock is held): classify it against the subject's
    other active items, then act on the contradiction and on the confidence mismatch."""
    others = [o for o in _subject_items(item.knowledge_type, item.subject) if o.pk != item.pk]
    found = classify(
        _Comparable.of(item), [_Comparable.of(o) for o in others], kt.mismatch_threshold
    )
    item.conflict_detections = [(str(kind), other) for kind, other in found]
    if cfg.copy_detection:
        _observe_copy(item)
    by_id = {o.pk: o for o in others}
    unsettled = {
        c.classification: c
        for c in Conflict.objects.select_for_update()
        .filter(
            knowledge_type=item.knowledge_type,
            subject=item.subject,
            classification__in=[Classification.CONTRADICTION, Classification.CONFIDENCE_MISMATCH],
        )
        .unsettled()
        .order_by("pk")
    }
    contradicted = [by_id[o] for k, o in found if k == ConflictKind.CONTRADICTION]
    mismatched = [by_id[o] for k, o in found if k == ConflictKind.CONFIDENCE_MISMATCH]
    ids = _act_on_contradiction(
        item, others, contradicted, unsettled.get(Classification.CONTRADICTION), cfg, now
    )
    ids += _act_on_mismatch(
        item, mismatched, unsettled.get(Classification.CONFIDENCE_MISMATCH), cfg, now
    )
    if ids:
        # An auto-resolution may have superseded the new item itself: the broadcast's
        # response and event must show it.
        item.refresh_from_db(fields=["status", "superseded_by"])
    return ids


def _act_on_contradiction(
    item: KnowledgeItem,
    others: list[KnowledgeItem],
    contradicted: list[KnowledgeItem],
    conflict: Conflict | None,
    cfg: ConflictSettings,
    now: datetime,
) -> list[int]:
    """Open the subject's contradiction, or join and re-evaluate the unsettled one."""
    if conflict is None and contradicted:
        conflict = _open_conflict([item], others, Classification.CONTRADICTION, now)
        _evaluate(conflict, cfg, now, created=True)
        return [conflict.pk]
    if conflict is not None:
        _link(conflict, [item], ItemRole.JOINED)
        _link(conflict, others, ItemRole.EXISTING)
        _evaluate(conflict, cfg, now)
        return [conflict.pk]
    return []


def _act_on_mismatch(
    item: KnowledgeItem,
    mismatched: list[KnowledgeItem],
    mismatch: Conflict | None,
    cfg: ConflictSettings,
    now: datetime,
) -> list[int]:
    """Join (or dissolve, when moot) the subject's confidence mismatch, or open one."""
    if mismatch is not None:
        mismatch.refresh_from_db()  # the contradiction's resolution may have dissolved it
    if mismatch is not None and not mismatch.is_unsettled:
        mismatch = None
    if mismatch is not None:
        if mismatched:
            _link(mismatch, [item, *mismatched], ItemRole.JOINED)
        if not _dissolve_if_moot(mismatch, cfg, now):
            return [mismatch.pk]
        mismatch = None
    if mismatched:
        mismatch = _open_conflict([item], mismatched, Classification.CONFIDENCE_MISMATCH, now)
        _evaluate(mismatch, cfg, now, created=True)
        return [mismatch.pk]
    return []


def _open_conflict(
    items: list[KnowledgeItem],
    existing: list[KnowledgeItem],
    classification: str,
    now: datetime,
    *,
    role: str = ItemRole.OPENER,
    **fields,
) -> Conflict:
    """A new conflict on ``items[0]``'s subject, opened by ``items`` (linked with ``role``)
    against ``existing``. The caller evaluates it or stores its proposal, and publishes."""
    conflict = Conflict.objects.create(
        knowledge_type=items[0].knowledge_type,
        subject=items[0].subject,
        classification=classification,
        opened_at=now,
        updated_at=now,
        **fields,
    )
    _link(conflict, items, role)
    _link(conflict, existing, ItemRole.EXISTING)
    return conflict


@dataclass(frozen=True)
class _Comparable:
    item_id: int
    source: str
    claim: str
    confidence: float
    subject: str
    knowledge_type: str

    @classmethod
    def of(cls, item: KnowledgeItem) -> _Comparable:
        return cls(
            item.pk,
            item.source.name,
            item.claim,
            item.confidence,
            item.subject,
            item.knowledge_type,
        )


def _dissolve_if_moot(conflict: Conflict, cfg: ConflictSettings, now: datetime) -> bool:
    items = _candidate_items(conflict)
    moot = len(items) < 2 or (
        conflict.classification == Classification.CONTRADICTION
        and len({i.claim for i in items}) < 2
    )
    if moot:
        _close(
            conflict,
            items,
            cfg,
            now,
            decision=Decision.DISSOLVED,
            actor=Actor.SYSTEM,
            actor_name=SYSTEM_ACTOR,
            winner_claim=None,
            proposal=None,
        )
    return moot


def _evaluate(
    conflict: Conflict, cfg: ConflictSettings, now: datetime, created: bool = False
) -> None:
    """(Re)compute the engine's proposal; apply it if allowed, else queue for review.

    Notes ``opened`` for a new conflict, and for an unsettled one ``pending_review``,
    ``proposal_changed`` or ``items_changed``; ``version`` goes up only when
    ``Conflict.reviewer_view`` changes (a refresh that moves only confidence, freshness or
    the margin leaves it, and sends no event)."""
    items = _candidate_items(conflict)
    if created:
        _note(conflict, "opened")
    before = conflict.reviewer_view()
    if _dissolve_if_moot(conflict, cfg, now):
        return
    cands = candidates_for(items, now, cfg)
    proposal = strategy_named(cfg.strategy).propose(cands)
    threshold = threshold_for(conflict.knowledge_type, cfg)
    _store_proposal(conflict, proposal, threshold)
    settled = now >= conflict.opened_at + timedelta(seconds=cfg.settle_seconds)
    if (
        conflict.classification == Classification.CONTRADICTION
        and cfg.auto_resolve
        and settled
        and proposal.margin >= threshold
        and _lock_items(items)
    ):
        _close(
            conflict,
            items,
            cfg,
            now,
            decision=Decision.AUTO,
            actor=Actor.AUTO,
            actor_name=ENGINE_ACTOR,
            winner_claim=proposal.winner_claim,
            proposal=proposal,
            cands=cands,
        )
        return
    if conflict.status == ConflictStatus.OPEN and (
        settled or conflict.classification != Classification.CONTRADICTION or not cfg.auto_resolve
    ):
        conflict.set_status(ConflictStatus.PENDING_REVIEW)
        _note(conflict, "pending_review")
    elif conflict.reviewer_view() != before:
        conflict.updated_at = now
        conflict.version += 1
    if conflict.proposed_claim != before[1] and not created:
        _note(conflict, "proposal_changed")
    elif conflict.reviewer_view()[2:] != before[2:] and not created:
        _note(conflict, "items_changed")
    conflict.save()


def _store_proposal(conflict: Conflict, proposal: Proposal, threshold: float) -> None:
    conflict.strategy = proposal.strategy
    conflict.proposal = proposal.to_dict()
    conflict.proposed_claim = proposal.winner_claim
    conflict.margin = proposal.margin
    conflict.threshold = threshold


@dataclass
class _Ruling:
    """A decision on a conflict and what it was based on (``_close``'s arguments)."""

    decision: str
    actor: str
    actor_name: str
    winner_claim: str | None
    proposal: Proposal | None
    winner_item: KnowledgeItem | None = None
    user: object = None
    note: str = ""

    @property
    def superseding(self) -> bool:
        return self.decision in (Decision.AUTO, Decision.ACCEPT, Decision.PICK, Decision.REJECT)


@dataclass
class _Split:
    """Which items of a conflict win and which are superseded by a ruling."""

    winner_ids: set[int]
    losers: list[KnowledgeItem]
    keeper: KnowledgeItem | None  # the item losers point to (``superseded_by``)


def _close(
    conflict: Conflict,
    items: Sequence[KnowledgeItem],
    cfg: ConflictSettings,
    now: datetime,
    *,
    decision: str,
    actor: str,
    actor_name: str,
    winner_claim: str | None,
    proposal: Proposal | None,
    cands: Sequence[Candidate] | None = None,
    winner_item: KnowledgeItem | None = None,
    user=None,
    note: str = "",
) -> Resolution:
    """Apply a decision: supersede the losers (never delete), learn trust, record the
    history row, note ``resolved`` / ``dismissed`` (``knowledge_resolved``), invalidate the
    type's cache after commit."""
    ruling = _Ruling(decision, actor, actor_name, winner_claim, proposal, winner_item, user, note)
    cands = list(cands) if cands is not None else candidates_for(items, now, cfg)
    split = _split(conflict, items, ruling)
    _supersede(conflict, split, ruling)
    trust_summary = _learn_trust(conflict, items, cands, split, ruling)
    resolution = _record_resolution(conflict, cfg, now, cands, split, ruling, trust_summary)
    if proposal is not None:
        _store_proposal(conflict, proposal, threshold_for(conflict.knowledge_type, cfg))
    _mark_decided(conflict, now, ruling)
    _note(
        conflict,
        "dismissed" if conflict.status == ConflictStatus.DISMISSED else "resolved",
        ruling.actor_name,
        decision=ruling.decision,
        actor=ruling.actor_name,
        winner_claim=ruling.winner_claim,
        winner_item_ids=resolution.winner_item_ids,
        superseded_item_ids=resolution.superseded_item_ids,
        resolution_id=resolution.pk,
        note=ruling.note,
    )
    if split.losers:
        knowledge_cache.invalidate_after_commit([conflict.knowledge_type])
        _dissolve_neighbours(conflict, split.losers, cfg, now)
    return resolution


def _split(conflict: Conflict, items: Sequence[KnowledgeItem], ruling: _Ruling) -> _Split:
    if ruling.winner_item is not None and conflict.classification != Classification.CONTRADICTION:
        winners = [ruling.winner_item]  # same claim on both sides: only the picked item stays
    else:
        claim = ruling.winner_claim
        winners = [i for i in items if claim is not None and i.claim == claim]
    winner_ids = {i.pk for i in winners}
    losers = [i for i in items if i.pk not in winner_ids] if ruling.superseding else []
    keeper = max(winners, key=lambda i: (i.observed_ts, i.pk)) if winners else None
    return _Split(winner_ids, losers, keeper)


def _supersede(conflict: Conflict, split: _Split, ruling: _Ruling) -> None:
    if split.losers:
        KnowledgeItem.objects.filter(pk__in=[i.pk for i in split.losers]).update(
            status=ItemStatus.SUPERSEDED, superseded_by=split.keeper
        )
        _link(conflict, split.losers, ItemRole.JOINED)
    if ruling.superseding:
        links = ConflictItem.objects.filter(conflict=conflict)
        links.filter(item_id__in=split.winner_ids).update(won=True)
        links.exclude(item_id__in=split.winner_ids).update(won=False)


def _learn_trust(
    conflict: Conflict,
    items: Sequence[KnowledgeItem],
    cands: list[Candidate],
    split: _Split,
    ruling: _Ruling,
) -> list[dict]:
    """Update the sources' trust for a superseding ruling; returns the JSON summary."""
    if not (ruling.superseding and cands):
        return []
    weight_actor = "human" if ruling.actor == Actor.HUMAN else "auto"
    if ruling.winner_item is not None and conflict.classification != Classification.CONTRADICTION:
        weight = DEFAULT_PARAMS.weight_for(weight_actor)
        updates = [TrustUpdate(c.source, c.item_id in split.winner_ids, weight) for c in cands]
    else:
        updates = resolution_updates(cands, ruling.winner_claim, weight_actor, DEFAULT_PARAMS)
    by_name = {i.source.name: i.source for i in items}
    return _apply_trust_updates(conflict.knowledge_type, by_name, updates)


def _record_resolution(
    conflict: Conflict,
    cfg: ConflictSettings,
    now: datetime,
    cands: list[Candidate],
    split: _Split,
    ruling: _Ruling,
    trust_summary: list[dict],
) -> Resolution:
    """The immutable history row of the ruling, with its inputs."""
    proposal, decision = ruling.proposal, ruling.decision
    agreed = None
    if proposal is not None and decision in (Decision.ACCEPT, Decision.PICK, Decision.REJECT):
        agreed = proposal.winner_claim == ruling.winner_claim and ruling.winner_claim is not None
    elif decision == Decision.AUTO:
        agreed = True
    return Resolution.objects.create(
        conflict=conflict,
        strategy=proposal.strategy if proposal else cfg.strategy,
        decision=decision,
        actor=ruling.actor,
        actor_name=ruling.actor_name[:150],
        user=ruling.user,
        winner_claim=ruling.winner_claim or "",
        winner_item_ids=sorted(split.winner_ids) if ruling.superseding else [],
        superseded_item_ids=sorted(i.pk for i in split.losers),
        proposal=proposal.to_dict() if proposal else {},
        proposal_agreed=agreed,
        inputs=[c.snapshot() for c in cands],
        trust_updates=trust_summary,
        note=ruling.note,
        created_at=now,
    )


def _mark_decided(conflict: Conflict, now: datetime, ruling: _Ruling) -> None:
    new_status = {
        Decision.AUTO: ConflictStatus.AUTO_RESOLVED,
        Decision.DISMISS: ConflictStatus.DISMISSED,
        Decision.DISSOLVED: ConflictStatus.DISMISSED,
    }.get(ruling.decision, ConflictStatus.RESOLVED)
    conflict.set_status(new_status)
    conflict.resolved_at = now
    conflict.updated_at = now
    conflict.decision = ruling.decision
    conflict.decided_claim = ruling.winner_claim or ""
    conflict.decided_by = ruling.actor_name[:150]
    conflict.decided_by_user = ruling.user
    conflict.note = ruling.note
    conflict.save()


def _dissolve_neighbours(
    conflict: Conflict, losers: list[KnowledgeItem], cfg: ConflictSettings, now: datetime
) -> None:
    """Superseded items may leave other conflicts of the subject without a competitor."""
    for other in (
        Conflict.objects.select_for_update()
        .unsettled()
        .filter(pk__in=_conflicts_with_items([i.pk for i in losers]))
        .exclude(pk=conflict.pk)
        .order_by("pk")
    ):
        _dissolve_if_moot(other, cfg, now)


# --- People and workers act on conflicts ---------------------------------------------------


def _locked_conflict(conflict_id: int) -> Conflict:
    conflict = Conflict.objects.select_for_update().filter(pk=conflict_id).first()
    if conflict is None:
        raise ActionError(f"no conflict {conflict_id}", "conflict", 404)
    return conflict


def actor_name_of(user=None, worker: Worker | None = None) -> str:
    if worker is not None:
        return worker.name
    return f"user:{getattr(user, 'username', None) or '?'}"


def do_resolve(
    conflict_id: int,
    decision: str,
    *,
    user=None,
    winner_item_id: int | None = None,
    note: str = "",
    version: int | None = None,
) -> Conflict:
    """A person decides an unsettled conflict.

    ``decision``: ``pick`` (``winner_item_id`` wins; items with other claims are superseded),
    ``accept`` (the engine's proposal, recomputed now), ``reject`` (every claim is wrong: all
    superseded), ``dismiss`` (not a real conflict: nothing superseded, no trust change).
    Locks (tail, conflict row, items, trust rows). A conflict already decided, or whose
    ``version`` differs from the one given, raises ActionError(409): of two people resolving
    at once, one wins and nothing is applied twice. Trust learns with the human weight.
    """
    if decision not in (Decision.PICK, Decision.ACCEPT, Decision.REJECT, Decision.DISMISS):
        raise ActionError("decision must be one of pick, accept, reject, dismiss", "decision")
    if decision == Decision.PICK and winner_item_id is None:
        raise ActionError("To pick a winner, choose which item is right first.", "winner_item")
    for attempt in range(RESOLVE_ATTEMPTS):
        try:
            return _resolve_once(conflict_id, decision, user, winner_item_id, note, version)
        except ItemsBusy:
            time.sleep(0.02 * (attempt + 1))
    raise ActionError(
        f"conflict {conflict_id}'s items are being updated; try again", "conflict", 409
    )


RESOLVE_ATTEMPTS = 8


def _resolve_once(conflict_id, decision, user, winner_item_id, note, version) -> Conflict:
    cfg = conflict_settings()
    with transaction.atomic():
        lock_log_tail()
        with _publishing():
            return _decide(conflict_id, decision, user, winner_item_id, note, version, cfg)


def _decide(conflict_id, decision, user, winner_item_id, note, version, cfg) -> Conflict:
    """The body of ``_resolve_once``, under its tail lock and event recorder."""
    conflict = _locked_conflict(conflict_id)
    if version is not None and version != conflict.version:
        raise ActionError(
            f"conflict {conflict_id} changed (version {conflict.version}, you sent {version})",
            "version",
            409,
        )
    if not conflict.is_unsettled:
        raise ActionError(f"conflict {conflict_id} is already {conflict.status}", "conflict", 409)
    now = timezone.now()
    items = _candidate_items(conflict)
    if not _lock_items(items):
        raise ItemsBusy()
    cands = candidates_for(items, now, cfg)
    proposal = strategy_named(cfg.strategy).propose(cands) if cands else None
    winner_item = None
    winner_claim: str | None = None
    if decision == Decision.PICK:
        winner_item = next((i for i in items if i.pk == winner_item_id), None)
        if winner_item is None:
            raise ActionError(
                f"item {winner_item_id} is not an active item of conflict {conflict_id}",
                "winner_item",
            )
        winner_claim = winner_item.claim
    elif decision == Decision.ACCEPT:
        if proposal is None:
            raise ActionError("the conflict has no active items to decide on", "decision")
        winner_claim = proposal.winner_claim
    _close(
        conflict,
        items,
        cfg,
        now,
        decision=decision,
        actor=Actor.HUMAN,
        actor_name=actor_name_of(user),
        winner_claim=winner_claim,
        proposal=proposal,
        cands=cands,
        winner_item=winner_item,
        user=user,
        note=note,
    )
    return conflict


def do_flag_conflict(
    worker: Worker | None, item_ids: Sequence[int], reason: str, *, user=None
) -> Conflict:
    """A worker (or a person) reports that these items conflict; a person will decide.

    The items must be at least two distinct active items of one knowledge type, visible to
    the worker. If an unsettled conflict already holds them all, that conflict is returned;
    if they share a subject with an unsettled contradiction, they join it and it goes to
    review; otherwise a new ``flagged`` conflict is opened in ``pending_review``.
    Publishes ``conflict_detected`` for a new conflict, ``conflict_updated`` for a
    contradiction it sends to review. Locks: the log's tail, then the conflict rows (the
    order of every conflicts action).
    """
    ids = sorted({int(i) for i in item_ids})
    if len(ids) < 2:
        raise ActionError("flag at least two distinct items", "items")
    reason = (reason or "").strip()
    if len(reason) > 500:
        raise ActionError("reason is longer than 500 characters", "reason")
    cfg = conflict_settings()
    actor = actor_name_of(user, worker)
    with transaction.atomic():
        lock_log_tail()
        with _publishing():
            return _flag(worker, ids=ids, reason=reason, actor=actor, cfg=cfg)


def _flag(worker: Worker | None, *, ids: list[int], reason: str, actor: str, cfg) -> Conflict:
    """The body of ``do_flag_conflict``, under its tail lock and event recorder."""
    items = _flaggable_items(worker, ids)
    conflict = _unsettled_holding(ids, worker) or _join_contradiction(items, worker, reason, actor)
    if conflict is not None:
        return conflict
    now = timezone.now()
    conflict = _open_conflict(
        items,
        [],
        Classification.FLAGGED,
        now,
        role=ItemRole.FLAGGED,
        status=ConflictStatus.PENDING_REVIEW,
        flagged_by=worker,
        flag_reason=reason,
    )
    cands = candidates_for(items, now, cfg)
    _store_proposal(
        conflict,
        strategy_named(cfg.strategy).propose(cands),
        threshold_for(conflict.knowledge_type, cfg),
    )
    conflict.save()
    _note(conflict, "opened", actor, flagged_by=actor, reason=reason)
    return conflict


def _flaggable_items(worker: Worker | None, ids: list[int]) -> list[KnowledgeItem]:
    """The items to flag: all found (and visible to ``worker``), active, of one type."""
    qs = KnowledgeItem.objects.select_related("source")
    if worker is not None:
        qs = qs.visible_to(worker)
    items = list(qs.filter(pk__in=ids).order_by("pk"))
    missing = sorted(set(ids) - {i.pk for i in items})
    if missing:
        raise ActionError(f"no item(s) {missing}", "items", 404)
    inactive = [i.pk for i in items if i.status != ItemStatus.ACTIVE]
    if inactive:
        raise ActionError(f"item(s) {inactive} are no longer active", "items")
    if len({i.knowledge_type for i in items}) > 1:
        raise ActionError("flagged items must be of one knowledge type", "items")
    if len({item_audience(i) for i in items}) > 1:
        # Every conflict's items share one audience (docs/security.md).
        raise ActionError(
            "flagged items must be visible to the same workers "
            "(all untargeted, or all between the same workers)",
            "items",
        )
    return items


def _unsettled_holding(ids: list[int], worker: Worker | None) -> Conflict | None:
    """An unsettled conflict visible to ``worker`` that already holds every one of ``ids``
    (locked)."""
    existing = (
        Conflict.objects.select_for_update()
        .unsettled()
        .visible_to(worker)
        .filter(pk__in=_conflicts_with_items(ids))
        .order_by("pk")
    )
    for conflict in existing:
        if set(ids) <= set(conflict.links.values_list("item_id", flat=True)):
            return conflict
    return None


def _join_contradiction(
    items: list[KnowledgeItem], worker: Worker | None, reason: str, actor: str
) -> Conflict | None:
    """Items of one subject with an unsettled contradiction join it and send it to review
    (untargeted items only: contradictions are public)."""
    if len({i.subject for i in items}) != 1 or any(i.is_targeted for i in items):
        return None
    conflict = (
        Conflict.objects.select_for_update()
        .unsettled()
        .filter(
            knowledge_type=items[0].knowledge_type,
            subject=items[0].subject,
            classification=Classification.CONTRADICTION,
        )
        .first()
    )
    if conflict is None:
        return None
    _link(conflict, items, ItemRole.FLAGGED)
    conflict.flagged_by = worker
    conflict.flag_reason = reason
    if conflict.status == ConflictStatus.OPEN:
        conflict.set_status(ConflictStatus.PENDING_REVIEW)
        _note(conflict, "pending_review", actor, flagged_by=actor, reason=reason)
    conflict.save()
    return conflict


class TooSoon(ActionError):
    """Asked again within ``review_request_interval``; ``retry_after`` in seconds."""

    status = 429

    def __init__(self, message: str, field: str, retry_after: int):
        super().__init__(message, field)
        self.retry_after = retry_after


def review_request_interval() -> int:
    return product_settings().review_request_interval


def do_request_resolution(
    conflict_id: int, *, worker: Worker | None = None, user=None, note: str = ""
) -> Conflict:
    """Ask people to decide: an ``open`` conflict moves to ``pending_review`` (out of the
    settle window); the request is counted.

    - A worker may ask only about a conflict it may see (else 404) in which one of its own
      items takes part (else 403); people may ask about any.
    - A decided conflict raises ActionError(409).
    - One request per conflict per requester per ``review_request_interval`` seconds (a
      setting, 600 by default): sooner raises ``TooSoon`` (429 with Retry-After).
    - ``version`` never changes: nothing a reviewer decides on changes, so a decision sent
      with the version the reviewer loaded never gets 409 because of a request.
    - Moving to ``pending_review`` publishes ``conflict_updated`` (same version).
    Locks: the log's tail (it may publish), then the conflict row.
    """
    with transaction.atomic():
        lock_log_tail()  # it may publish: the tail before the conflict row (lock order)
        with _publishing():
            return _request(conflict_id, worker, user, note)


def _request(conflict_id: int, worker: Worker | None, user, note: str) -> Conflict:
    """The body of ``do_request_resolution``, under its tail lock and event recorder."""
    conflict = _locked_conflict(conflict_id)
    if worker is not None:
        if not Conflict.objects.visible_to(worker).filter(pk=conflict.pk).exists():
            raise ActionError(f"no conflict {conflict_id}", "conflict", 404)
        if not conflict.links.filter(item__source=worker).exists():
            raise ActionError(
                "only workers whose items take part in a conflict may request its review",
                "conflict",
                403,
            )
    if not conflict.is_unsettled:
        raise ActionError(f"conflict {conflict_id} is already {conflict.status}", "conflict", 409)
    interval = review_request_interval()
    who = actor_name_of(user, worker)
    # cache.add is atomic on the shared cache: of concurrent requests one gets the slot.
    if interval > 0 and not cache.add(f"kx:review-req:{conflict.pk}:{who}", 1, interval):
        raise TooSoon(
            f"review of conflict {conflict_id} was already requested by {who} "
            f"in the last {interval} s",
            "conflict",
            interval,
        )
    if conflict.status == ConflictStatus.OPEN and conflict.can_transition(
        ConflictStatus.PENDING_REVIEW
    ):
        conflict.status = ConflictStatus.PENDING_REVIEW  # not set_status: version kept
        _note(conflict, "pending_review", who, requested_by=who)
    now = timezone.now()
    conflict.review_requested_at = now
    conflict.review_requests += 1
    conflict.updated_at = now
    if note:
        conflict.note = (conflict.note + f"\n[{who}] {note}").strip()[:5000]
    conflict.save(
        update_fields=["status", "review_requested_at", "review_requests", "updated_at", "note"]
    )
    return conflict


def do_reevaluate(conflict_id: int) -> Conflict:
    """Evaluate an unsettled contradiction again now (the settle sweep; after trust changes)."""
    cfg = conflict_settings()
    with transaction.atomic():
        lock_log_tail()
        with _publishing():
            conflict = _locked_conflict(conflict_id)
            if conflict.is_unsettled and conflict.classification == Classification.CONTRADICTION:
                _evaluate(conflict, cfg, timezone.now())
    return conflict


def sweep_conflicts(now: datetime | None = None) -> int:
    """Re-evaluate unsettled contradictions; returns how many.

    Open contradictions past the settle window are evaluated, and those in review whose
    proposal, recomputed with the current trust and the evidence now, reaches the threshold
    are applied (so yesterday's pending conflict settles itself once the evidence is
    decisive; the others are left untouched, their version too). The periodic sweep
    (``conflicts.reliability.sweep``) re-estimates trust first. One conflict per
    transaction; several sweepers may run (each re-checks under lock)."""
    cfg = conflict_settings()
    now = now or timezone.now()
    due = list(
        Conflict.objects.filter(
            status=ConflictStatus.OPEN,
            opened_at__lte=now - timedelta(seconds=cfg.settle_seconds),
            classification=Classification.CONTRADICTION,
        )
        .order_by("opened_at", "pk")
        .values_list("pk", flat=True)
    )
    if cfg.auto_resolve:
        for conflict in Conflict.objects.filter(
            status=ConflictStatus.PENDING_REVIEW, classification=Classification.CONTRADICTION
        ).order_by("opened_at", "pk"):
            cands = candidates_for(_candidate_items(conflict), now, cfg)
            if len({c.claim for c in cands}) < 2:
                due.append(conflict.pk)  # dissolves it
            elif strategy_named(cfg.strategy).propose(cands).margin >= threshold_for(
                conflict.knowledge_type, cfg
            ):
                due.append(conflict.pk)
    count = 0
    for pk in due:
        try:
            do_reevaluate(pk)
            count += 1
        except Exception:  # one bad conflict must not stop the sweep
            log.exception("re-evaluating conflict %s failed", pk)
    return count


# --- Trust pins ------------------------------------------------------------------------------


def do_pin_trust(worker: Worker, knowledge_type: str, value: float | None) -> SourceTrust:
    """Pin (or with None unpin) a worker's trust for one type; learning continues underneath."""
    if knowledge_type not in registry:
        raise ActionError(f"unknown knowledge type {knowledge_type!r}", "knowledge_type")
    if value is not None and not 0.0 <= value <= 1.0:
        raise ActionError("pinned trust must be within 0..1", "pinned")
    with transaction.atomic():
        row, _ = SourceTrust.objects.select_for_update().get_or_create(
            worker=worker, knowledge_type=knowledge_type
        )
        row.pinned = value
        row.updated_at = timezone.now()
        row.save(update_fields=["pinned", "updated_at"])
    return row
