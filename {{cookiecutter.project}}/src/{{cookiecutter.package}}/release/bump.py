"""`inv bump patch|minor|major|X.Y.Z`: the one manual step of a release.

It rewrites the one place the version is written (`[project] version` in pyproject.toml),
refreshes the lock file so that it stays consistent with it (uv.lock with uv, poetry.lock
with poetry, whichever the project has), and commits both as `Release X.Y.Z`. A dirty tree
or a version that is not greater is refused, and nothing is changed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from packaging.version import Version

from {{ cookiecutter.package }}.artifacts.names import check_version
from {{ cookiecutter.package }}.engines.version_env import find_uv
from {{ cookiecutter.package }}.errors import ReleaseError, shown
from {{ cookiecutter.package }}.release.git import Git

RULES = ("patch", "minor", "major")
# The version line of the [project] table: the first `version = "..."` after its header.
_PROJECT_VERSION = re.compile(r'(?ms)^(\[project\]\n(?:(?!^\[).)*?^version = ")([^"]+)(")')


def next_version(current: str, rule: str) -> str:
    if rule in RULES:
        major, minor, patch = (*Version(current).release, 0, 0)[:3]
        new = {
            "patch": f"{major}.{minor}.{patch + 1}",
            "minor": f"{major}.{minor + 1}.0",
            "major": f"{major + 1}.0.0",
        }[rule]
    else:
        new = check_version(rule)
    if Version(new) <= Version(current):
        raise ReleaseError(f"version {new} is not greater than the current {current}")
    return new


def _lock(root: Path) -> list[str]:
    """Refresh the project's lock file for the new version; returns the files it wrote."""
    if (root / "uv.lock").exists():
        command, written = [find_uv(), "lock", "--quiet"], ["uv.lock"]
    elif (root / "poetry.lock").exists():
        poetry = shutil.which("poetry")
        if poetry is None:
            raise ReleaseError("poetry.lock needs poetry to refresh it: install poetry")
        command, written = [poetry, "lock"], ["poetry.lock"]
    else:
        return []
    # Only the project's own version changed, and every locked package is in uv's cache
    # since the last sync: resolving from the cache gives the same lock in 0.2 s where asking
    # the index takes 1.5-7 s. Online only when the cache lacks something.
    if written == ["uv.lock"] and _succeeds([*command, "--offline"], root):
        return written
    result = subprocess.run(command, cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1]
        raise ReleaseError(
            f"cannot refresh {written[0]} for the new version ({shown(detail, 160)}); nothing "
            f"was changed: run `{'uv' if written == ['uv.lock'] else 'poetry'} lock` to see why"
        )
    return written


def _succeeds(command: list[str], root: Path) -> bool:
    return subprocess.run(command, cwd=root, capture_output=True).returncode == 0


def bump(root: Path, rule: str) -> str:
    """Set the next version, refresh the lock, commit; returns the new version."""
    git = Git(root)
    git.require_clean("a bump is its own commit")
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text()
    match = _PROJECT_VERSION.search(text)
    if match is None:
        raise ReleaseError(f"no [project] version in {pyproject}")
    new = next_version(match.group(2), rule)
    locks = [root / name for name in ("uv.lock", "poetry.lock")]
    saved = {lock: lock.read_bytes() for lock in locks if lock.exists()}
    pyproject.write_text(text[: match.start(2)] + new + text[match.end(2) :])
    try:
        git.commit(f"Release {new}", "pyproject.toml", *_lock(root))
    except ReleaseError:
        pyproject.write_text(text)
        for lock, data in saved.items():
            lock.write_bytes(data)
        git.unstage()
        raise
    return new
