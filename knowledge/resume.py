"""The resume rule: where a consumer that asks for "everything after ``since``" starts.

One rule for every path that reads the event log for a client: the WebSocket ``subscribe``,
``GET events``, the worker inbox (``read_inbox``) and, through their answers, the SDK and the
browser client, which only obey what the server says (docs/realtime.md, "Resuming").

- ``since`` omitted (None): live only. Start at the log's top; ``recovered`` is True.
- ``since`` in this epoch, not above the top, not below the prune horizon: start at ``since``;
  every matching event after it follows, each once, in seq order. ``recovered`` is True.
- Anything else (the log was pruned past ``since``, ``since`` is from another epoch or from the
  future because the log was reset or restored from a backup): ``recovered`` is False and the
  consumer now stands at the log's top. What it missed cannot be replayed without a gap, so it
  is not replayed at all: the client reloads its state from the REST API (which reflects every
  event up to that top) and continues from ``position``. Replaying "what is left" would apply
  part of history twice on top of the reload and still leave the hole.

A durable consumer that has no position yet (a worker's first inbox read) gets one from
``first_position``, then follows the rule above like any other:

- ``start="now"`` (the default): the log's position when the worker was created (the newest
  event written before it, but never above the log's top, the horizon every reader obeys). A
  new worker does not receive the history that came before it, yet loses nothing sent after it
  existed (an item targeted at it before its first read is in its inbox).
- ``start="beginning"``: the oldest position the log still holds (the prune horizon), so it
  receives every event the log has that it may see.
"""

from __future__ import annotations

from dataclasses import dataclass

from knowledge.events import LogPosition


@dataclass(frozen=True)
class Resume:
    """The answer: deliver events with ``seq > position``; ``recovered`` False means a gap."""

    position: int
    recovered: bool
    log: LogPosition

    @property
    def epoch(self) -> str:
        return self.log.epoch

    @property
    def top(self) -> int:
        return self.log.top


def is_recoverable(since: int, epoch: str | None, log: LogPosition) -> bool:
    """Can a consumer that saw everything up to ``since`` (in ``epoch``) resume without a gap?"""
    if epoch is not None and epoch != log.epoch:
        return False
    if since > log.top:
        return False  # from the future: a log that was reset or restored from a backup
    return since >= log.pruned_through


INBOX_STARTS = ("now", "beginning")


def first_position(start: str, log: LogPosition, at_creation: int) -> int:
    """Where a new durable consumer starts: ``now`` -> ``at_creation`` (the log's position
    when the consumer was created), ``beginning`` -> the prune horizon (see above)."""
    if start not in INBOX_STARTS:
        raise ValueError(f"start must be one of {', '.join(INBOX_STARTS)}")
    # Never past the log's top: with snapshot ordering an event written before the worker
    # existed may stand above the horizon, with a transaction that drew a smaller seq still
    # in flight; a start there would skip that seq when it commits.
    return log.pruned_through if start == "beginning" else min(at_creation, log.top)


def resume(since: int | None, epoch: str | None, log: LogPosition) -> Resume:
    """Where a consumer that saw everything up to ``since`` (in ``epoch``) stands now."""
    if since is None:
        return Resume(log.top, True, log)
    if is_recoverable(since, epoch or None, log):
        return Resume(since, True, log)
    return Resume(log.top, False, log)
