"""Errors the SDK raises: one family, whatever the transport.

Every error is an ``SDKError``; catch that to catch them all::

    SDKError                the exchange refused a request (status, field)
    ├── AuthError           the token was refused (HTTP 401/403, WebSocket close 4401)
    ├── TransportError      the exchange could not be reached after all retries, or answered garbage
    ├── NotAvailableError   the server does not offer this feature
    └── SpoolFullError      the spool is at its bound (``kx_sdk.spool``)

An error raised by a broadcast also says which broadcast and what to do about it:
``idempotency_key`` (the key that was sent) and ``safe_to_resend`` (resending the same body
with the same key cannot store a copy, and may succeed: the failure was transient). ``str()``
of any SDK error is one line, fit for a log.
"""

from __future__ import annotations

# Statuses after which the same request may succeed later (the SDK already retried them).
TRANSIENT_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})


class SDKError(Exception):
    """The exchange refused a request (``status`` is the HTTP status, ``field`` the culprit).

    ``idempotency_key`` and ``safe_to_resend`` are set when the request was a broadcast
    (``None`` otherwise).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        field: str | None = None,
        idempotency_key: str | None = None,
        safe_to_resend: bool | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field
        self.idempotency_key = idempotency_key
        self.safe_to_resend = safe_to_resend

    @staticmethod
    def from_status(message: str, status: int, field: str | None = None) -> SDKError:
        """The error for an HTTP status: ``AuthError`` for 401/403, else ``SDKError``."""
        cls = AuthError if status in (401, 403) else SDKError
        return cls(message, status=status, field=field)

    @property
    def transient(self) -> bool:
        """True if the same request may succeed later (unreachable, 5xx, 429, 409, 408)."""
        return self.status is None or self.status in TRANSIENT_STATUSES

    def for_broadcast(self, idempotency_key: str) -> SDKError:
        """Mark this error as a broadcast's: its key, and whether resending it is safe."""
        self.idempotency_key = idempotency_key
        self.safe_to_resend = self.transient and not isinstance(self, AuthError)
        return self

    def __str__(self) -> str:
        parts = [" ".join(self.message.split())[:300]]
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.field:
            parts.append(f"field {self.field}")
        if self.idempotency_key is not None:
            parts.append(f"idempotency_key {self.idempotency_key}")
            parts.append(
                "safe to resend with that key"
                if self.safe_to_resend
                else "not safe to resend as is"
            )
        return "; ".join(parts)


class AuthError(SDKError):
    """The server refused the token, or this token's right to do that (HTTP 401/403, WebSocket
    close 4401): retrying won't help."""


class TransportError(SDKError):
    """The exchange could not be reached (after all retries), or answered garbage.

    For a broadcast it is unknown whether the item was stored; resending with the same
    ``idempotency_key`` is safe either way (the server answers a stored key with the same item).
    """


class NotAvailableError(SDKError):
    """The exchange does not offer this feature (e.g. conflict flagging before it lands)."""
