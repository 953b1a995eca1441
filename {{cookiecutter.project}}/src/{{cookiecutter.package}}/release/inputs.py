"""The release inputs: the files a version is made of, defined once.

A version is its wheel (`src/`, `pyproject.toml`), its image (the `Dockerfile`, what
`.dockerignore` lets in, the locked dependencies) and the configuration its pipelines are
compiled and trained with (`conf/`). Two commits with the same release inputs are the same
version, whatever else differs (README, tests, CI files, tasks/): that is what "promoted
by content" compares, what the tag, the code record and the image label check, and what
`inv check-bump` and `inv release --skip-released` hold a commit to.
"""

from __future__ import annotations

import hashlib

from {{ cookiecutter.package }}.errors import ReleaseError
from {{ cookiecutter.package }}.release.git import Git

RELEASE_INPUTS = (
    "src",
    "conf",
    "pyproject.toml",
    "uv.lock",
    "poetry.lock",
    "Dockerfile",
    ".dockerignore",
)
SHOWN = 3  # changed paths named in a refusal; the rest are counted


def inputs_id(git: Git, rev: str) -> str:
    """One id for the release inputs of `rev`: equal ids mean equal files."""
    return hashlib.sha256(git.files(rev, RELEASE_INPUTS).encode()).hexdigest()


def changed_inputs(git: Git, old: str, new: str) -> list[str]:
    """The release inputs that differ between two commits (empty: the same version)."""
    return git.changed_paths(old, new, RELEASE_INPUTS)


def describe(paths: list[str]) -> str:
    """`src/a.py, conf/b.yaml and 3 more`."""
    shown = ", ".join(paths[:SHOWN])
    return shown + (f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else "")


def released_commit(git: Git, version: str, recorded_sha: str = "") -> str | None:
    """The commit `version` was released from: its tag, else the sha its record names."""
    tagged = git.tag_commit(f"v{version}")
    if tagged is not None:
        return tagged
    if recorded_sha and git.has_commit(recorded_sha):
        return recorded_sha
    return None


def check_unchanged(git: Git, version: str, head: str, recorded_sha: str = "") -> None:
    """Refuse when `head` changes the release inputs of released `version`: one line with
    the version, the first changed paths and the remedy."""
    released = released_commit(git, version, recorded_sha)
    if released is None:
        raise ReleaseError(
            f"version {version} is released, but neither its tag v{version} nor its commit "
            "is in this repository: fetch the tags (`git fetch --tags`)"
        )
    check_same_inputs(
        git, released, head, f"version {version} is already released from {released[:12]}"
    )


def check_same_inputs(git: Git, released: str, head: str, released_as: str) -> None:
    """Refuse when `head`'s release inputs differ from those of commit `released`, in one
    line: `released_as` says what that commit is, then the first changed paths, the remedy."""
    changed = changed_inputs(git, released, head)
    if changed:
        raise ReleaseError(
            f"{released_as}, and HEAD changes its release inputs ({describe(changed)}): bump "
            "the version (`inv bump`)"
        )


def check_bump(git: Git, version: str) -> str:
    """`inv check-bump` (CI on pull requests): refuse a commit that changes the release
    inputs of a version that is already tagged; returns what it found. Git only: CI on a
    pull request has no access to the environments' stores, but it has the tags."""
    if git.tag_commit(f"v{version}") is None:
        return f"version {version} has no tag v{version}: merging this releases it"
    check_unchanged(git, version, git.head())
    return f"version {version} is released (v{version}) and this commit keeps its release inputs"
