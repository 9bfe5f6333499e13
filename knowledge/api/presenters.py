"""What the API answers, decided once.

The REST views and the in-process transport the built-in workers use
(``workers/inprocess.py``) both call these, so a worker gets the same JSON shapes whichever
transport it has (``workers/tests/test_transports_agree.py`` compares them call by call). A
view keeps only what is HTTP's: parsing the request, who the caller is, the status code.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

from django.db.models import Count
from rest_framework import serializers

from identity.models import Worker
from knowledge import actions
from knowledge.actions import BroadcastInput, BroadcastResult
from knowledge.api.errors import _flatten
from knowledge.api.lean_validation import LeanValidator
from knowledge.api.serializers import BroadcastSerializer, BulkBroadcastSerializer, QuerySerializer
from knowledge.choices import ItemStatus, Urgency
from knowledge.errors import ActionError
from knowledge.events import log_position
from knowledge.models import Event, InboxCursor, KnowledgeItem
from knowledge.query import KnowledgeQuery
from knowledge.scopes import write_refusal, write_refusals

BEHIND_CAP = 100_000


def broadcast_status(result: BroadcastResult) -> int:
    """201 for a stored item; 200 for a refresh of the source's own item or a replay."""
    return 201 if result.outcome != "refreshed" and not result.replayed else 200


def check_write_scope(worker: Worker, knowledge_type: str) -> None:
    """403 naming the type when ``knowledge_type`` is outside the worker's write scope."""
    refusal = write_refusal(worker, knowledge_type)
    if refusal:
        raise ActionError(refusal, "knowledge_type", 403)


@functools.cache
def _item_validator() -> LeanValidator:
    return LeanValidator(BroadcastSerializer())


@functools.cache
def _envelope_validator() -> LeanValidator:
    return LeanValidator(BulkBroadcastSerializer())


def bulk_envelope(data) -> dict:
    """``POST broadcast/bulk``'s body validated (``items``, ``source``, ``lean``): by the lean
    validator when the body is plain JSON, else by ``BulkBroadcastSerializer``, which raises
    its ValidationError (a 400) as ``is_valid(raise_exception=True)`` does."""
    return _validated(_envelope_validator(), BulkBroadcastSerializer, data)


def broadcast_attrs(data) -> dict:
    """``POST broadcast``'s body validated, the same way (``BroadcastSerializer``'s rules, by
    the validator the bulk's items use): DRF builds a serializer's fields for each instance,
    which cost more than validating the item (docs/performance.md, "Single broadcast:
    queries per request")."""
    return _validated(_item_validator(), BroadcastSerializer, data)


def _validated(lean: LeanValidator, serializer_class, data) -> dict:
    attrs = lean(data)
    if attrs is None:
        serializer = serializer_class(data=data)
        serializer.is_valid(raise_exception=True)
        attrs = serializer.validated_data
    return attrs


def broadcast_entries(worker: Worker, raw_items: Iterable) -> list[BroadcastInput | ActionError]:
    """Each raw item validated for ``worker``: its input, or the ``ActionError`` that rejects
    it (invalid fields, another source, outside the write scope). The lean validator
    (``knowledge/api/lean_validation.py``) recognises a valid item without DRF's per-field
    machinery; any other item is validated by ``BroadcastSerializer``, whose errors it gets.
    One serializer serves every item: building a DRF serializer's fields costs ~0.5 ms, more
    than validating an item (docs/performance.md)."""
    lean = _item_validator()
    refusal_of = write_refusals(worker)
    entries: list[BroadcastInput | ActionError] = []
    for raw in raw_items:
        attrs = lean(raw)
        if attrs is None:
            try:
                attrs = lean.serializer.run_validation(raw)
            except serializers.ValidationError as exc:
                errors = _flatten(exc.detail)
                error = ActionError("; ".join(f"{k}: {v[0]}" for k, v in errors.items()))
                error.errors = errors
                error.field = next(iter(errors), None)
                entries.append(error)
                continue
        declared = attrs.get("source")
        if declared and declared != worker.name:
            entries.append(
                ActionError(f"source {declared!r} is not {worker.name!r}", "source", 403)
            )
            continue
        refusal = refusal_of(attrs["knowledge_type"])
        if refusal:
            entries.append(ActionError(refusal, "knowledge_type", 403))
            continue
        entries.append(BroadcastSerializer.input_from(attrs))
    return entries


@functools.cache
def _query_validator() -> QuerySerializer:
    return QuerySerializer()


@functools.cache
def _query_fields() -> frozenset[str]:
    return frozenset(_query_validator().fields)


def parse_query(data: dict) -> KnowledgeQuery:
    """The query a request's filters ask for. Unknown filters are an ``ActionError``, invalid
    values DRF's ``ValidationError`` (both 400 in the API's error shape). One serializer
    validates every query: building a DRF serializer's fields (a deep copy of each declared
    field) cost ~2 ms a request, a quarter of a cached hit (docs/performance.md)."""
    unknown = sorted(set(data) - _query_fields())
    if unknown:
        raise ActionError(f"unknown filter(s): {', '.join(unknown)}", unknown[0])
    return QuerySerializer.query_from(_query_validator().run_validation(data))


def bulk_row(index: int, result: BroadcastResult | ActionError, lean: bool = False) -> dict:
    """One entry of a bulk answer: the errors of a rejected item; for a stored one its whole
    result, or with ``lean`` only its id, outcome, conflicts and replayed flag."""
    if isinstance(result, ActionError):
        errors = getattr(result, "errors", None) or {
            result.field or "non_field_errors": [result.message]
        }
        return {"index": index, "status": result.status, "errors": errors}
    code = broadcast_status(result)
    if not lean:
        return {"index": index, "status": code, "result": result.as_dict()}
    return {
        "index": index,
        "status": code,
        "id": result.item.pk,
        "outcome": result.outcome,
        "conflicts": result.conflict_ids,
        "replayed": result.replayed,
    }


def bulk_answer(results: Sequence[BroadcastResult | ActionError], lean: bool = False) -> dict:
    """``POST broadcast/bulk``: one row per item (``bulk_row``) and the counts."""
    out = [bulk_row(index, result, lean) for index, result in enumerate(results)]
    stored = sum(1 for result in results if not isinstance(result, ActionError))
    return {"results": out, "stored": stored, "rejected": len(out) - stored}


def inbox_page(page) -> dict:
    """``GET receive/<worker>``: the page ``actions.read_inbox`` read."""
    return {
        "epoch": page.epoch,
        "position": page.position,
        "ack": page.ack,
        "top": page.top,
        "recovered": page.recovered,
        "results": [e.as_message(page.epoch) for e in page.events],
        "next": page.ack if page.ack < page.top else None,
    }


def ack_answer(worker: Worker, cursor: InboxCursor) -> dict:
    """``POST receive/<worker>/ack``."""
    return {"worker": worker.name, "position": cursor.position}


def subscription_dict(sub) -> dict:
    """A worker's subscription, with the types it effectively receives."""
    return {
        "worker": sub.worker.name,
        "types": sub.types,
        "muted_types": sub.muted_types,
        "sources": sub.sources,
        "events": sub.events,
        "min_urgency": Urgency(sub.min_urgency).label,
        "effective_types": sorted(sub.effective_types()),
    }


def worker_state(worker: Worker) -> dict:
    """``GET/PUT state/<worker>``: the worker, its reported state, inbox and subscription."""
    pos = log_position()
    sub = actions.get_subscription(worker)
    cursor = InboxCursor.objects.filter(worker=worker).first()
    # No cursor yet: where its first read will start (from its creation by default).
    position = cursor.position if cursor else actions.inbox_start(worker)[0]
    by_type = dict(
        KnowledgeItem.objects.filter(source=worker, status=ItemStatus.ACTIVE)
        .values_list("knowledge_type")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {
        "worker": worker.name,
        "kind": worker.kind,
        "is_active": worker.is_active,
        "last_seen_at": worker.last_seen_at.isoformat() if worker.last_seen_at else None,
        "broadcast_count": worker.broadcast_count,
        "received_count": worker.received_count,
        "state": worker.state,
        "inbox": {
            "epoch": pos.epoch,
            "position": position,
            "top": pos.top,
            # events of its inbox not yet acked, up to the log's top (the SQL prefilter of
            # its inbox; capped: a count, not a seq difference, seqs have gaps)
            "behind": Event.objects.filter(
                actions.InboxFilter(worker, sub).q(),
                seq__gt=position,
                seq__lte=pos.top,
            )[:BEHIND_CAP].count(),
            "acked_at": cursor.acked_at.isoformat() if cursor and cursor.acked_at else None,
        },
        "subscription": subscription_dict(sub),
        "active_items": by_type,
    }
