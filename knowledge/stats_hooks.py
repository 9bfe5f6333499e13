"""Let other apps add sections to ``GET stats`` without the core importing them."""

from __future__ import annotations

from collections.abc import Callable

_providers: dict[str, Callable[[], dict]] = {}


def register(name: str, provider: Callable[[], dict]) -> None:
    _providers[name] = provider


def collect() -> dict:
    return {name: provider() for name, provider in sorted(_providers.items())}
