"""The git wrapper, against real repositories."""

from __future__ import annotations

import pytest

from workers.engine.gitrepo import BadRevisionError, GitRepo, NotARepositoryError

from .conftest import DAY, EPOCH


@pytest.fixture
def history(builder):
    builder.write("app/models.py", "A = 1\n")
    builder.write("README.md", "hello\n")
    first = builder.commit("first")
    builder.write("app/models.py", "A = 2\n")
    builder.write("app/views.py", "B = 1\n")
    second = builder.commit("second")
    builder.write("app/models.py", "A = 3\n")
    builder.delete("app/views.py")
    third = builder.commit("third")
    return builder, [first, second, third]


def test_not_a_repository_raises(tmp_path):
    with pytest.raises(NotARepositoryError):
        GitRepo(tmp_path)
    with pytest.raises(NotARepositoryError):
        GitRepo(tmp_path / "missing")


def test_commits_are_oldest_first_and_max_count_keeps_the_newest(history):
    builder, shas = history
    commits = builder.repo.commits()
    assert [c.sha for c in commits] == shas
    assert [c.subject for c in commits] == ["first", "second", "third"]
    assert [c.timestamp for c in commits] == [EPOCH + DAY, EPOCH + 2 * DAY, EPOCH + 3 * DAY]
    assert [c.sha for c in builder.repo.commits(max_count=2)] == shas[1:]
    assert [c.sha for c in builder.repo.commits(shas[1])] == shas[:2]


def test_empty_repository_has_no_commits(builder):
    assert builder.repo.commits() == []


def test_bad_revisions_raise(history):
    builder, _ = history
    repo = builder.repo
    with pytest.raises(BadRevisionError):
        repo.resolve("0" * 40)
    with pytest.raises(BadRevisionError):
        repo.tree("deadbeef")
    with pytest.raises(BadRevisionError):
        repo.commits("no-such-branch")
    with pytest.raises(BadRevisionError):
        repo.changed_files("--output=/tmp/x", "HEAD")


def test_files_are_read_from_the_commit_not_the_work_tree(history):
    builder, shas = history
    builder.write("app/models.py", "A = 'uncommitted'\n")
    repo = builder.repo
    assert repo.read_python_files(shas[0]) == {"app/models.py": b"A = 1\n"}
    assert repo.read_python_files(shas[1]) == {
        "app/models.py": b"A = 2\n",
        "app/views.py": b"B = 1\n",
    }
    tree = repo.tree(shas[2])
    assert list(tree) == ["app/models.py"]
    assert repo.read_blobs(tree.values()) == {tree["app/models.py"]: b"A = 3\n"}


def test_changed_files_between_commits(history):
    builder, shas = history
    repo = builder.repo
    assert repo.changed_files(shas[0], shas[1]) == ["app/models.py", "app/views.py"]
    assert repo.changed_files(shas[1], shas[2]) == ["app/models.py", "app/views.py"]
    assert repo.changed_files(None, shas[0]) == ["README.md", "app/models.py"]


def test_file_stats_count_churn_and_first_commit_up_to_a_commit(history):
    builder, shas = history
    repo = builder.repo
    stats = repo.file_stats(shas[2])
    assert stats["app/models.py"].churn == 3
    assert stats["app/models.py"].first_time == EPOCH + DAY
    assert stats["app/models.py"].last_time == EPOCH + 3 * DAY
    assert stats["app/views.py"].churn == 2
    assert repo.file_stats(shas[1])["app/models.py"].churn == 2
    assert stats["app/models.py"].age_days(EPOCH + 11 * DAY) == 10
    assert set(repo.file_stats(shas[2], paths=["README.md"])) == {"README.md"}
