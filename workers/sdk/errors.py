"""Errors the SDK raises: one family, whatever the transport."""

from __future__ import annotations


class SDKError(Exception):
    """The exchange refused a request (``status`` is the HTTP status, ``field`` the culprit)."""

    def __init__(self, message: str, *, status: int | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field


class TransportError(SDKError):
    """The exchange could not be reached (after all retries), or answered garbage."""


class NotAvailableError(SDKError):
    """The exchange does not offer this feature (e.g. conflict flagging before it lands)."""
