"""The SDK's loop as one client (issue 15): a cycle's retries share one deadline, the live feed
wakes the loop and reports through callbacks, the update hooks are public."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from conftest import risk_payload
from identity.actions import do_create_worker
from knowledge.tests.daphne_server import DaphneServer
from kx_sdk import AuthError, BaseWorker, HttpTransport, SDKError, TransportError


class Down(BaseHTTPRequestHandler):
    """An exchange in an outage: every request answers 503 (counted by path)."""

    seen: list[str] = []

    def log_message(self, *args):
        pass

    def _answer(self):
        Down.seen.append(f"{self.command} {self.path.partition('?')[0]}")
        body = json.dumps({"detail": "the database is unavailable"}).encode()
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _answer


@pytest.fixture
def down_server():
    Down.seen = []
    server = HTTPServer(("127.0.0.1", 0), Down)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class FakeClock:
    """Time as the transport sees it: advanced only by its sleeps (no real waiting)."""

    def __init__(self):
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_failed_cycle_spends_one_retry_deadline_not_one_per_request(down_server):
    """Issue 15: the inbox and then the heartbeat each spent their own ~6 s of retries (17 s
    per failed cycle). Now the cycle's requests share ``retry_deadline``: once the inbox has
    failed for good, the step's broadcast and the heartbeat fail at once without being sent."""
    clock = FakeClock()
    transport = HttpTransport(
        down_server, "kx_t", worker="scout", retries=50, backoff=0.25, sleep=clock.sleep
    )
    transport.clock = clock

    class Sender(BaseWorker):
        outcome: list[BaseException] = []

        def step(self, **_):
            try:
                self.broadcast("risk_pattern", risk_payload(), 0.5, idempotency_key="scout:1")
            except TransportError as exc:
                self.outcome.append(exc)
                raise

    worker = Sender(transport, retry_deadline=6.0)
    assert worker.run_cycle() is False
    assert sum(clock.slept) <= 6.0  # the whole cycle's retries fit in the deadline
    assert len(clock.slept) < 50  # stopped by the deadline, not by the retry count
    assert set(Down.seen) == {"GET /api/knowledge/receive/scout"}  # nothing else was sent
    # The step ran anyway; its broadcast says it was not stored and may be resent as is.
    [err] = Sender.outcome
    assert err.idempotency_key == "scout:1" and err.safe_to_resend is True
    assert "not sent" in str(err)
    assert worker.stats.errors == 2  # the inbox, then the step


def test_outside_a_deadline_block_every_request_spends_its_own_retries(down_server):
    """The control for the test above (what a cycle did before): each request retries on its
    own budget, so a failed inbox read and the heartbeat after it pay twice."""
    clock = FakeClock()
    transport = HttpTransport(down_server, "kx_t", worker="scout", retries=3, sleep=clock.sleep)
    transport.clock = clock
    for call in (transport.receive, lambda: transport.update_state({})):
        with pytest.raises(SDKError) as exc:
            call()
        assert exc.value.status == 503 and exc.value.transient
    assert Down.seen.count("GET /api/knowledge/receive/scout") == 4
    assert Down.seen.count("PUT /api/knowledge/state/scout") == 4


def test_an_override_under_an_old_underscore_hook_name_is_refused():
    """Renamed hooks: an override under the old name would never be called, silently."""
    with pytest.raises(TypeError, match="update_risk_model"):

        class Old(BaseWorker):
            def _update_risk_model(self, items):
                pass


@pytest.mark.django_db(transaction=True)
def test_a_live_worker_is_woken_by_an_event_and_reports_its_connection(think):
    """``live = True``: an event for the worker starts the next cycle at once. The interval is
    an hour, so the second cycle can only come from the live feed's wake-up."""
    server = DaphneServer().start()
    try:
        _, token = do_create_worker("watcher")
        connected, stepped = threading.Event(), threading.Event()
        statuses: list[str] = []

        class Watcher(BaseWorker):
            interests = ("risk_pattern",)
            seen: list[str] = []

            def step(self, **_):
                stepped.set()

            def update_risk_model(self, items):
                self.seen.extend(item["subject"] for item in items)

            def on_connect(self, mode):
                statuses.append(mode)
                connected.set()

            def on_disconnect(self, reason):
                statuses.append(reason)

        worker = Watcher(HttpTransport(server.url, token), interval=3600, live=True)
        runner = threading.Thread(target=worker.run, kwargs={"max_cycles": 2}, daemon=True)
        runner.start()
        assert connected.wait(30), "the live feed never connected"
        assert stepped.wait(30), "no first cycle"  # its inbox read is over
        assert think.broadcast("risk_pattern", risk_payload("seen live")).status_code == 201
        runner.join(30)
        assert not runner.is_alive(), "the event did not wake the loop"
        assert worker.stats.cycles == 2 and len(Watcher.seen) == 1
        assert statuses == ["live", "stopped"]  # WebSocket (websockets is installed here)
    finally:
        server.stop()


@pytest.mark.django_db(transaction=True)
def test_a_refused_token_stops_the_live_feed_through_on_error_and_the_loop_goes_on(think):
    server = DaphneServer().start()
    try:
        errors: list[BaseException] = []
        feed_stopped = threading.Event()

        def on_error(exc):  # the cycles' errors and the feed's
            errors.append(exc)
            if str(exc).startswith("live feed"):
                feed_stopped.set()

        worker = BaseWorker(
            HttpTransport(server.url, "kx_wrong", worker="think"),
            interval=3600,
            live=True,
            on_error=on_error,
        )
        runner = threading.Thread(target=worker.run, daemon=True)
        runner.start()
        assert feed_stopped.wait(30), "the feed's AuthError never reached on_error"
        worker.stop()
        runner.join(30)
        assert not runner.is_alive()
        assert errors and all(isinstance(e, AuthError) for e in errors)
        assert worker.stats.cycles >= 1  # the loop ran its cycles regardless
    finally:
        server.stop()
