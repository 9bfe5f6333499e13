"""Count the Redis round trips and commands this process makes (bench/hit.py and the tests).

A round trip is one ``send_packed_command`` of redis-py (a single command, or a whole
pipeline sent at once and then read back); a command is one packed command (a pipeline of
four is one round trip and four commands). Counted on redis-py's classes, the edge of the
process, so whatever client code is above (django-redis, a pipeline of ours) is counted the
same way.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass

from redis import connection as redis_connection


@dataclass
class Trips:
    round_trips: int = 0
    commands: int = 0


_lock = threading.Lock()
_active: list[Trips] = []


def _wrap(cls, name: str, field: str):
    original = getattr(cls, name)

    def counted(self, *args, **kwargs):
        with _lock:
            for trips in _active:
                setattr(trips, field, getattr(trips, field) + 1)
        return original(self, *args, **kwargs)

    counted.__wrapped__ = original
    setattr(cls, name, counted)
    return original


@contextmanager
def count_redis_trips():
    """``with count_redis_trips() as trips:`` counts every Redis round trip and command the
    process makes inside the block (every thread)."""
    trips = Trips()
    with _lock:
        first = not _active
        _active.append(trips)
    originals = []
    if first:
        # Commands are packed by hiredis's serializer when hiredis is installed (it is, in
        # requirements.txt), else by redis-py's own.
        wrapped = [
            (redis_connection.AbstractConnection, "send_packed_command", "round_trips"),
            (redis_connection.PythonRespSerializer, "pack", "commands"),
            (redis_connection.HiredisRespSerializer, "pack", "commands"),
        ]
        originals = [(cls, name, _wrap(cls, name, field)) for cls, name, field in wrapped]
    try:
        yield trips
    finally:
        with _lock:
            _active.remove(trips)
        for cls, name, original in originals:
            setattr(cls, name, original)
