"""`inv bump`: the one manual step, on a real git repository with a real uv lock."""

import shutil
from pathlib import Path

import pytest
from conftest import git

from {{ cookiecutter.package }}.errors import ReleaseError
from {{ cookiecutter.package }}.release.bump import bump, next_version
from {{ cookiecutter.package }}.version import PROJECT_ROOT


def test_next_versions() -> None:
    assert next_version("1.2.3", "patch") == "1.2.4"
    assert next_version("1.2.3", "minor") == "1.3.0"
    assert next_version("1.2.3", "major") == "2.0.0"
    assert next_version("1.2", "patch") == "1.2.1"
    assert next_version("1.2.3", "1.10.0") == "1.10.0"
    for bad, message in (("1.2.3", "not greater"), ("1.2.2", "not greater"), ("x", "invalid")):
        with pytest.raises((ReleaseError, ValueError), match=message):
            next_version("1.2.3", bad)


@pytest.fixture
def locked_repo(git_repo: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "T")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "t@example.com")
    lock = PROJECT_ROOT / "uv.lock"
    if not lock.exists():
        pytest.skip("this checkout has no uv.lock (run `uv sync` and commit it)")
    shutil.copy(lock, git_repo / "uv.lock")
    git(git_repo, "add", "uv.lock")
    git(git_repo, "commit", "-q", "-m", "lock")
    return git_repo


def version_in(repo: Path, name: str) -> str:
    text = (repo / name).read_text()
    if name == "pyproject.toml":
        return text.split('\nversion = "', 1)[1].split('"', 1)[0]
    package = text.split('[[package]]\nname = "{{ cookiecutter.project }}"\nversion = "', 1)[1]
    return package.split('"', 1)[0]


def test_bump_edits_the_version_refreshes_the_lock_and_commits(locked_repo: Path) -> None:
    current = version_in(locked_repo, "pyproject.toml")
    before = (locked_repo / "uv.lock").read_text()
    new = bump(locked_repo, "minor")
    assert new == next_version(current, "minor")
    assert version_in(locked_repo, "pyproject.toml") == new
    # The lock follows, resolved from uv's cache: the project's version line alone changed.
    after = (locked_repo / "uv.lock").read_text()
    assert changed_lines(before, after) == [(f'version = "{current}"', f'version = "{new}"')]
    assert git(locked_repo, "log", "-1", "--format=%s") == f"Release {new}"
    assert git(locked_repo, "status", "--porcelain") == ""


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    """The lines that differ, as (before, after); an added or removed line fails here."""
    pairs = zip(before.splitlines(), after.splitlines(), strict=True)
    return [(old, new) for old, new in pairs if old != new]


@pytest.mark.slow
def test_bump_asks_the_index_when_uvs_cache_lacks_a_locked_package(
    locked_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bump resolves from uv's cache first; on a machine whose cache is empty that fails,
    and the bump asks the index instead (the cache fills): the same lock either way, only
    the project's version line changed."""
    cache = tmp_path / "empty-uv-cache"
    monkeypatch.setenv("UV_CACHE_DIR", str(cache))
    current = version_in(locked_repo, "pyproject.toml")
    before = (locked_repo / "uv.lock").read_text()
    new = bump(locked_repo, "patch")
    after = (locked_repo / "uv.lock").read_text()
    assert changed_lines(before, after) == [(f'version = "{current}"', f'version = "{new}"')]
    assert any(cache.iterdir())  # asked the index: the offline attempt had nothing to use


def test_refused_bumps_change_nothing(locked_repo: Path) -> None:
    head = git(locked_repo, "rev-parse", "HEAD")
    files = {n: (locked_repo / n).read_bytes() for n in ("pyproject.toml", "uv.lock")}
    current = version_in(locked_repo, "pyproject.toml")
    with pytest.raises(ReleaseError, match="not greater"):
        bump(locked_repo, current)
    (locked_repo / "README.md").write_text("dirty\n")
    with pytest.raises(ReleaseError, match="working tree is not clean"):
        bump(locked_repo, "patch")
    (locked_repo / "README.md").unlink()
    git(locked_repo, "checkout", "README.md")
    # A number no tool stores (uv keeps each in 64 bits): one line, before any file changes.
    with pytest.raises(ValueError, match="12 digits per number") as huge:
        bump(locked_repo, "99999999999999999999.0.0")
    assert "\n" not in str(huge.value)
    assert git(locked_repo, "rev-parse", "HEAD") == head
    assert {n: (locked_repo / n).read_bytes() for n in files} == files
