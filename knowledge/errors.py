"""The error every action raises when it refuses a request (``ActionError``), and how a
storage failure of one item becomes one (``storage_error``).

``knowledge/api/errors.py`` turns an ActionError into ``{detail, errors{field}}`` with its
status; the bulk broadcast puts it in that item's result.
"""

from __future__ import annotations

import logging

from django.db import DatabaseError, DataError, IntegrityError

log = logging.getLogger(__name__)


class ActionError(Exception):
    """A request the action refuses; ``field`` names the culprit, ``status`` the HTTP code."""

    status = 400

    def __init__(self, message: str, field: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if status is not None:
            self.status = status


def storage_error(exc: Exception) -> ActionError:
    """The ActionError for an item whose storage failed after it passed validation.

    The database's own message stays in the log (it names tables and constraints):
    ``IntegrityError`` (a constraint, e.g. a target worker deleted meanwhile) is 409,
    ``DataError`` (a value the column refuses) 400, any other database error 503, and
    anything else is a bug: 500, logged with its traceback.
    """
    if isinstance(exc, ActionError):
        return exc
    if isinstance(exc, IntegrityError):
        error = ActionError("the database refused this item (a constraint failed)", None, 409)
    elif isinstance(exc, DataError):
        error = ActionError("the database refused a value of this item", None, 400)
    elif isinstance(exc, DatabaseError):
        error = ActionError("the database could not store this item; try again", None, 503)
    else:
        log.exception("storing an item failed", exc_info=exc)
        return ActionError("storing this item failed", None, 500)
    log.warning("storing an item failed: %s: %s", type(exc).__name__, exc)
    error.__cause__ = exc
    return error
