"""/metrics and the dashboard read the relay's connections from a request thread while the
event loop adds and removes them: seen as a 500 on /metrics ("Set changed size during
iteration") while 1,000 sockets connected in `make bench-ws-fleet`."""

from __future__ import annotations

import asyncio
import sys
import threading

from knowledge.relay import Connection, Relay, _relays


def test_a_snapshot_taken_while_connections_come_and_go_does_not_fail():
    loop = asyncio.new_event_loop()
    relay = Relay(loop)
    steady = [Connection(label=f"worker:w{i}", viewer=f"w{i}", max_queue=10) for i in range(300)]
    relay.connections.update(steady)
    churn = [Connection(label=f"worker:c{i}", viewer=f"c{i}", max_queue=10) for i in range(50)]
    stop = threading.Event()

    def connect_and_disconnect():  # what the event loop does as sockets come and go
        while not stop.is_set():
            for conn in churn:
                relay.connections.add(conn)
            for conn in churn:
                relay.unregister(conn)

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    mover = threading.Thread(target=connect_and_disconnect)
    mover.start()
    try:
        snapshots = [relay.snapshot() for _ in range(300)]
    finally:
        stop.set()
        mover.join()
        sys.setswitchinterval(old_interval)
        _relays.discard(relay)
        loop.close()
    assert all(len(s["connections"]) >= len(steady) for s in snapshots)
