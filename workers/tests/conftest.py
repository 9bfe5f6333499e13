"""Fixtures for the worker tests: real git repositories with a generated history."""

from __future__ import annotations

import pytest

from workers.engine.tests.conftest import RepoBuilder
from workers.engine.tests.test_replay import build_history


@pytest.fixture
def repo_builder(tmp_path) -> RepoBuilder:
    return RepoBuilder(tmp_path / "repo")


@pytest.fixture
def history_repo(repo_builder) -> RepoBuilder:
    """12 commits of a package whose long functions, bare excepts and complex functions are
    fixed at different rates (the engine's replay fixture)."""
    build_history(repo_builder, commits=12)
    return repo_builder
