"""The worker comparison (``/dashboard/workers/``): one row per worker from its identity, the
state document its SDK reports (``status``, ``stats``, and ``spool`` once the SDK keeps a
local spool), its inbox cursor and the time series."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from dashboard.timeseries import per_worker_totals
from identity.models import Worker
from knowledge.events import log_position
from knowledge.models import InboxCursor

WINDOWS = [("15m", "15 min"), ("60m", "1 hour"), ("6h", "6 hours"), ("24h", "24 hours")]


@dataclass
class WorkerRow:
    worker: Worker
    status: str
    cycles: int | None
    errors: int | None
    last_error: str
    mean_cycle_seconds: float | None
    last_cycle_seconds: float | None
    heartbeat: datetime | None
    position: int
    inbox_lag: int
    spool: dict | None
    broadcast_by_type: list[tuple[str, int]] = field(default_factory=list)
    received_by_type: list[tuple[str, int]] = field(default_factory=list)

    @property
    def broadcast_in_window(self) -> int:
        return sum(n for _, n in self.broadcast_by_type)

    @property
    def received_in_window(self) -> int:
        return sum(n for _, n in self.received_by_type)


def _number(value) -> float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _spool(state: dict) -> dict | None:
    spool = state.get("spool")
    if not isinstance(spool, dict):
        return None
    return {
        "depth": _number(spool.get("depth")),
        "oldest_age_seconds": _number(spool.get("oldest_age_seconds")),
        "dead_letters": _number(spool.get("dead_letters")),
    }


def worker_rows(window: int) -> list[WorkerRow]:
    top = log_position().top
    positions = dict(InboxCursor.objects.values_list("worker_id", "position"))
    totals = per_worker_totals(window)
    rows = []
    for w in Worker.objects.order_by("name"):
        state = w.state if isinstance(w.state, dict) else {}
        stats = state.get("stats") if isinstance(state.get("stats"), dict) else {}
        cycles = _number(stats.get("cycles"))
        total_seconds = _number(stats.get("cycle_seconds"))
        position = positions.get(w.pk, 0)
        by = totals.get(w.name, {"broadcast": {}, "received": {}})
        rows.append(
            WorkerRow(
                worker=w,
                status=str(state.get("status") or ("inactive" if not w.is_active else "unknown")),
                cycles=cycles,
                errors=_number(stats.get("errors")),
                last_error=str(stats.get("last_error") or ""),
                mean_cycle_seconds=total_seconds / cycles if cycles and total_seconds else None,
                last_cycle_seconds=_number(stats.get("last_cycle_seconds")),
                heartbeat=w.last_seen_at,
                position=position,
                inbox_lag=max(top - position, 0),
                spool=_spool(state),
                broadcast_by_type=sorted(by["broadcast"].items(), key=lambda kv: -kv[1]),
                received_by_type=sorted(by["received"].items(), key=lambda kv: -kv[1]),
            )
        )
    return rows
