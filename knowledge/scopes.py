"""Write and read scopes: which knowledge types a worker may broadcast and read.

The default comes from ``KNOWLEDGE_EXCHANGE['scope_mode']``:

- ``open`` (the default): every worker writes and reads every type;
- ``registry``: a worker writes the types whose ``broadcast_by`` names it (by name or kind)
  and reads those plus the types whose ``interested`` names it and the types propagated to
  every worker.

An admin may replace either default per worker (``identity.models.WorkerScope``). The read
scope limits *untargeted* items of other workers: a worker always sees its own items and
items targeted at it. docs/security.md ("Scopes").
"""

from __future__ import annotations

from collections.abc import Callable

from django.core.cache import cache

from config.product import product_settings
from identity.models import SCOPE_MEMO, Worker, WorkerScope, scope_cache_key
from knowledge.registry import registry

ALL = "*"
MODES = ("open", "registry")
_CACHE_SECONDS = 300
_NONE = "-"  # cached: no override row


def scope_mode() -> str:
    mode = product_settings().scope_mode
    return mode if mode in MODES else "registry"  # an unknown mode fails closed


def _override(worker: Worker) -> tuple[list | None, list | None]:
    """The admin's (write, read) lists; remembered on the worker object (a token-authenticated
    worker comes with them from the token cache), else from the shared cache (cleared when
    a scope is saved)."""
    memo = getattr(worker, SCOPE_MEMO, None)
    if memo is not None:
        return memo
    key = scope_cache_key(worker.pk)
    cached = cache.get(key)
    if cached is None:
        row = WorkerScope.objects.filter(worker_id=worker.pk).first()
        cached = (row.write_types, row.read_types) if row else _NONE
        cache.set(key, cached, _CACHE_SECONDS)
    memo = (None, None) if cached == _NONE else tuple(cached)
    setattr(worker, SCOPE_MEMO, memo)
    return memo


def _expand(types: list) -> frozenset[str] | None:
    return None if ALL in types else frozenset(types)


def _names(worker: Worker) -> set[str]:
    return {worker.name, worker.kind}


def _scope(worker: Worker, which: int, registry_default) -> frozenset[str] | None:
    override = _override(worker)[which]
    if override is not None:
        return _expand(override)
    if scope_mode() == "open":
        return None
    names = _names(worker)
    return frozenset(kt.name for kt in registry.all() if registry_default(kt, names))


def write_types(worker: Worker) -> frozenset[str] | None:
    """The types ``worker`` may broadcast; None: every type."""
    return _scope(worker, 0, lambda kt, names: names & set(kt.broadcast_by))


def read_types(worker: Worker) -> frozenset[str] | None:
    """The types of other workers' untargeted items ``worker`` may read; None: every type."""
    return _scope(
        worker,
        1,
        lambda kt, names: (
            names & (set(kt.broadcast_by) | set(kt.interested)) or kt.propagation == "broadcast"
        ),
    )


def write_refusal(worker: Worker, knowledge_type: str) -> str | None:
    """Why ``worker`` may not broadcast ``knowledge_type``, or None if it may."""
    return write_refusals(worker)(knowledge_type)


def write_refusals(worker: Worker) -> Callable[[str], str | None]:
    """``write_refusal`` for one worker and many types (a bulk broadcast's items): the
    worker's write scope is looked up once."""
    allowed = write_types(worker)

    def refusal(knowledge_type: str) -> str | None:
        if allowed is None or knowledge_type in allowed:
            return None
        return (
            f"worker {worker.name!r} may not broadcast {knowledge_type!r} "
            f"(its write scope: {', '.join(sorted(allowed)) or 'none'})"
        )

    return refusal
