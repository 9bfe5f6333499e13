"""One exception hierarchy in the SDK (issue 15): every error an SDKError, AuthError exported,
a broadcast's error carrying its idempotency key and whether resending is safe, and a failed
cycle logged as one line, not a chained traceback. Against a real server (daphne)."""

from __future__ import annotations

import logging
import socket

import pytest

import kx_sdk as sdk
from knowledge.tests.daphne_server import DaphneServer
from kx_sdk import (
    AuthError,
    BaseWorker,
    HttpTransport,
    NotAvailableError,
    SDKError,
    TransportError,
    live,
)


def test_every_sdk_error_is_an_sdk_error_and_exported():
    for cls in (AuthError, TransportError, NotAvailableError):
        assert issubclass(cls, SDKError) and cls.__name__ in sdk.__all__
    exported = [getattr(sdk, n) for n in sdk.__all__]
    errors = [c for c in exported if isinstance(c, type) and issubclass(c, BaseException)]
    assert len(errors) >= 5 and all(issubclass(c, SDKError) for c in errors)  # one base
    assert live.AuthError is AuthError  # the live feed raises the same class


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unreachable(retries: int = 1) -> HttpTransport:
    url = f"http://127.0.0.1:{closed_port()}"
    return HttpTransport(url, "kx_t", worker="scout", retries=retries, sleep=lambda s: None)


def test_an_unreachable_broadcast_says_its_key_and_that_resending_is_safe():
    worker = BaseWorker(unreachable())
    with pytest.raises(TransportError) as exc:
        worker.broadcast(
            "risk_pattern", {"pattern": "p", "risk_level": "low"}, 0.5, idempotency_key="scout:k1"
        )
    err = exc.value
    assert err.idempotency_key == "scout:k1" and err.safe_to_resend is True
    line = str(err)
    assert "\n" not in line and "idempotency_key scout:k1" in line and "safe to resend" in line


@pytest.mark.django_db(transaction=True)
def test_against_a_server_bad_token_is_auth_error_and_a_400_is_not_safe_to_resend(think):
    server = DaphneServer().start()
    try:
        with pytest.raises(AuthError) as exc:
            HttpTransport(server.url, "not-a-token", sleep=lambda s: None)
        assert exc.value.status == 401 and isinstance(exc.value, SDKError)

        worker = BaseWorker(HttpTransport(server.url, think.token, sleep=lambda s: None))
        with pytest.raises(SDKError) as exc:
            worker.broadcast("risk_pattern", {"no": "pattern"}, 0.5, idempotency_key="think:bad")
        err = exc.value
        assert err.status == 400 and err.field and err.idempotency_key == "think:bad"
        assert err.safe_to_resend is False and "not safe to resend" in str(err)
    finally:
        server.stop()


def test_an_unreachable_inbox_is_one_log_line_and_the_step_runs_on_cached_knowledge(caplog):
    class Reader(BaseWorker):
        seen: list[int] = []

        def step(self, **_):
            self.seen.append(len(self.known(["risk_pattern"])))

    worker = Reader(unreachable(retries=2))
    worker.remember({"id": 1, "source": "think", "knowledge_type": "risk_pattern", "subject": "s"})
    errors = []
    worker.on_error = errors.append
    with caplog.at_level(logging.INFO, logger="workers.scout"):
        assert worker.run_cycle() is False
    assert Reader.seen == [1]  # the step ran, on the item the worker already held
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1  # the heartbeat that could not be sent either is not a second
    record = warnings[0]
    assert record.exc_info is None and "\n" not in record.getMessage()
    assert "inbox unreachable" in record.getMessage() and "TransportError" in record.getMessage()
    assert worker.stats.errors == 1 and [type(e) for e in errors] == [TransportError]


def test_a_bug_in_the_workers_own_code_still_logs_its_traceback(caplog):
    class Buggy(BaseWorker):
        def receive(self):
            pass

        def step(self, **_):
            raise ZeroDivisionError("oops")

    worker = Buggy(unreachable(retries=0))
    with caplog.at_level(logging.INFO, logger="workers.scout"):
        assert worker.run_cycle() is False
    failed = [r for r in caplog.records if "cycle failed" in r.getMessage()]
    assert len(failed) == 1 and failed[0].exc_info is not None


def test_in_process_a_403_is_an_auth_error_too(think, analysis):
    from workers.inprocess import InProcessTransport

    transport = InProcessTransport(think.worker)
    body = {
        "knowledge_type": "risk_pattern",
        "payload": {"pattern": "p", "risk_level": "low"},
        "confidence": 0.5,
        "source": "analysis",
    }
    with pytest.raises(AuthError) as exc:
        transport.broadcast(body)
    assert exc.value.status == 403
