"""The image's dependency locks: the project's runtime dependencies, and the build backend
its wheel is built with, pinned to the versions installed in the environment that builds
(and tested) the release, which `uv sync` installed exactly as uv.lock pins them."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from {{ cookiecutter.package }}.errors import ReleaseError


def _applies(requirement: Requirement, extras: frozenset[str]) -> bool:
    if requirement.marker is None:
        return True
    environment: dict[str, str] = {str(k): str(v) for k, v in default_environment().items()}
    return any(
        requirement.marker.evaluate({**environment, "extra": extra}) for extra in (extras or {""})
    )


def pinned_requirements(distribution: str) -> list[str]:
    """`name==version` for every runtime dependency of `distribution`, transitively."""
    pinned: dict[str, str] = {}
    queue: list[tuple[str, frozenset[str]]] = [(distribution, frozenset())]
    visited: set[tuple[str, frozenset[str]]] = set()
    while queue:
        name, extras = queue.pop()
        if (canonicalize_name(name), extras) in visited:
            continue
        visited.add((canonicalize_name(name), extras))
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            if not _applies(requirement, extras):
                continue
            key = canonicalize_name(requirement.name)
            pinned[key] = metadata.version(requirement.name)
            queue.append((requirement.name, frozenset(requirement.extras)))
    pinned.pop(canonicalize_name(distribution), None)
    return [f"{name}=={version}" for name, version in sorted(pinned.items())]


def pinned_build_backend(pyproject: Path) -> list[str]:
    """`name==version` for each requirement of `[build-system]` (poetry-core), as installed
    here: the image builds its wheel with the backend the lock pins, not the newest one."""
    requires = tomllib.loads(pyproject.read_text())["build-system"]["requires"]
    pins = []
    for text in requires:
        name = Requirement(text).name
        try:
            pins.append(f"{canonicalize_name(name)}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            raise ReleaseError(
                f"{name}, the build backend uv.lock pins, is not installed here: `uv sync` "
                "(its dev group installs it)"
            ) from None
    return pins
