"""When to try the server again: the SDK's one rule (the live feed and the HTTP transport).

- After a failure the server said nothing about: full-jitter exponential backoff,
  ``backoff_delay``: uniform in ``[0, min(cap, base * factor**attempt))``.
- After a refusal that says when (HTTP 503/429 with ``Retry-After``, or a socket closed 4013
  "try again later" with the reason ``retry after N s``, 1 s without one): at least that long,
  plus the same
  full jitter, ``retry_delay``, so that thousands of clients refused in the same second (a
  server's handshake bound after a restart, docs/realtime.md "Handshake bound") do not all
  come back in the same second either.
"""

from __future__ import annotations

import random
import re

_RETRY_REASON = re.compile(r"retry after (\d+(?:\.\d+)?) ?s")
#: The wait a close 4013 without a reason means (daphne drops close reasons): the server's
#: default ``ws_handshake_retry_after``.
DEFAULT_RETRY_AFTER = 1.0


def backoff_delay(attempt: int, base: float, factor: float, cap: float, rnd=random.random) -> float:
    """Full jitter: uniform in [0, min(cap, base * factor**attempt))."""
    return rnd() * min(cap, base * factor ** max(attempt, 0))


def retry_delay(
    attempt: int,
    retry_after: float | None,
    base: float,
    factor: float,
    cap: float,
    rnd=random.random,
) -> float:
    """The server's ``retry_after`` (seconds; None: it gave none) plus full jitter."""
    return max(retry_after or 0.0, 0.0) + backoff_delay(attempt, base, factor, cap, rnd)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (the delay form; an HTTP date is not used here)."""
    if value is None:
        return None
    value = value.strip()
    return float(value) if value.isdigit() else None


def retry_after_from_reason(reason: str | None) -> float | None:
    """Seconds from a close reason ``retry after N s`` (the server's close 4013), or None."""
    match = _RETRY_REASON.search(reason or "")
    return float(match.group(1)) if match else None
