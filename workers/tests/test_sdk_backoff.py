"""The SDK's one rule for when to try the server again (kx_sdk/backoff.py): full jitter, after
the server's Retry-After when it gave one (docs/realtime.md, "Handshake bound")."""

from __future__ import annotations

from kx_sdk.backoff import backoff_delay, parse_retry_after, retry_after_from_reason, retry_delay
from kx_sdk.live import backoff_delay as live_backoff_delay

BACKOFF = (0.5, 2.0, 15.0)  # LiveFeed's defaults


def test_a_refusal_waits_its_retry_after_plus_the_full_jitter():
    assert retry_delay(0, 2.0, *BACKOFF, rnd=lambda: 0.0) == 2.0
    assert retry_delay(0, 2.0, *BACKOFF, rnd=lambda: 0.5) == 2.25
    assert retry_delay(3, 2.0, *BACKOFF, rnd=lambda: 0.5) == 2.0 + 2.0
    assert retry_delay(10, 1.0, *BACKOFF, rnd=lambda: 1.0) == 1.0 + 15.0  # capped jitter
    # No retry-after: the plain backoff.
    assert retry_delay(2, None, *BACKOFF, rnd=lambda: 0.5) == backoff_delay(
        2, *BACKOFF, rnd=lambda: 0.5
    )


def test_refused_clients_spread_out_instead_of_returning_together():
    import random

    rnd = random.Random(7).random
    delays = [retry_delay(2, 1.0, *BACKOFF, rnd=rnd) for _ in range(1000)]
    assert min(delays) >= 1.0 and max(delays) < 3.0
    assert len({int(d * 10) for d in delays}) == 20  # every 100 ms slot of [1, 3) is used


def test_retry_after_is_read_from_the_header_and_from_a_close_reason():
    assert parse_retry_after("1") == 1.0
    assert parse_retry_after(" 30 ") == 30.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert parse_retry_after(None) is None
    assert retry_after_from_reason("retry after 2 s") == 2.0
    assert retry_after_from_reason("retry after 0.5s") == 0.5
    assert retry_after_from_reason("going away") is None
    assert live_backoff_delay is backoff_delay  # still importable from kx_sdk.live
