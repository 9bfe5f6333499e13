from __future__ import annotations

from rest_framework.permissions import BasePermission

from identity.models import Worker


def request_worker(request) -> Worker | None:
    """The worker behind a token-authenticated request, or None for a person."""
    return request.auth if isinstance(request.auth, Worker) else None


class IsWorkerOrStaff(BasePermission):
    """Workers with a token, or staff people with a session."""

    message = "Authenticate with a worker token or as a staff user."

    def has_permission(self, request, view) -> bool:
        if request_worker(request) is not None:
            return True
        user = request.user
        return bool(user and user.is_authenticated and user.is_staff)
