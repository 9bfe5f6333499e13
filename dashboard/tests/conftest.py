"""Fixtures of the dashboard's browser tests: a real daphne and a screenshot directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from knowledge.tests.daphne_server import DaphneServer

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def daphne():
    srv = DaphneServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def shots(tmp_path) -> Path:
    """Where screenshots go: $KX_SCREENSHOT_DIR, or a temp directory."""
    path = Path(os.environ.get("KX_SCREENSHOT_DIR") or tmp_path)
    path.mkdir(parents=True, exist_ok=True)
    return path
