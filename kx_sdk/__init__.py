"""The Knowledge Exchange SDK: write a worker that shares knowledge through the exchange.

    from kx_sdk import BaseWorker, HttpTransport

    class Hello(BaseWorker):
        def step(self, **_):
            self.broadcast("risk_pattern", {"pattern": "hello", "risk_level": "low"}, 0.5)

    Hello(HttpTransport("http://127.0.0.1:8000", token)).run()

Every error the SDK raises is an ``SDKError`` (see ``kx_sdk.errors``). See ``docs/workers.md``
and ``docs/sdk.md``. The package imports nothing from the server; inside the server's own
repository ``workers.inprocess.InProcessTransport`` is the same interface without HTTP.
"""

from .errors import AuthError, NotAvailableError, SDKError, TransportError
from .live import LiveFeed
from .spool import Spool, SpoolFullError
from .transport import HttpTransport, Transport
from .worker import ROUTES, BaseWorker, WorkerStats

__version__ = "0.1.0"

__all__ = [
    "ROUTES",
    "AuthError",
    "BaseWorker",
    "HttpTransport",
    "LiveFeed",
    "NotAvailableError",
    "SDKError",
    "Spool",
    "SpoolFullError",
    "Transport",
    "TransportError",
    "WorkerStats",
]
