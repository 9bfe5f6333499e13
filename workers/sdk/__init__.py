"""The worker SDK: write a worker that shares knowledge through the exchange.

    from workers.sdk import BaseWorker, HttpTransport

    class Hello(BaseWorker):
        def step(self, **_):
            self.broadcast("risk_pattern", {"pattern": "hello", "risk_level": "low"}, 0.5)

    Hello(HttpTransport("http://127.0.0.1:8000", token)).run()

Every error the SDK raises is an ``SDKError`` (see ``workers.sdk.errors``). See ``docs/workers.md``. ``InProcessTransport`` is the same interface inside this project.
"""

from .errors import AuthError, NotAvailableError, SDKError, TransportError
from .spool import Spool, SpoolFullError
from .transport import HttpTransport, InProcessTransport, Transport
from .worker import ROUTES, BaseWorker, WorkerStats

__all__ = [
    "ROUTES",
    "AuthError",
    "BaseWorker",
    "HttpTransport",
    "InProcessTransport",
    "NotAvailableError",
    "SDKError",
    "Spool",
    "SpoolFullError",
    "Transport",
    "TransportError",
    "WorkerStats",
]
