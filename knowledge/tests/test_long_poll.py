"""The long poll parks on the relay with no thread held: that needs every middleware to be
async-capable (one sync-only middleware puts the whole chain, and the wait, in a thread)."""

from django.conf import settings
from django.utils.module_loading import import_string


def test_every_middleware_is_async_capable():
    sync_only = [
        m for m in settings.MIDDLEWARE if not getattr(import_string(m), "async_capable", False)
    ]
    assert not sync_only, f"sync-only middleware holds a thread per long poll: {sync_only}"
