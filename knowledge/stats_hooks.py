"""Let other apps add sections to ``GET stats`` without the core importing them."""

from __future__ import annotations

from collections.abc import Callable

_providers: dict[str, tuple[Callable[..., dict], bool]] = {}


def register(name: str, provider: Callable[..., dict], per_viewer: bool = False) -> None:
    """``per_viewer`` providers are called with the viewing worker (None for a person) and
    must count only what it may see (knowledge/visibility.py)."""
    _providers[name] = (provider, per_viewer)


def collect(viewer=None) -> dict:
    return {
        name: provider(viewer) if per_viewer else provider()
        for name, (provider, per_viewer) in sorted(_providers.items())
    }
