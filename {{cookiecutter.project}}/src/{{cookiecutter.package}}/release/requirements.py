"""The image's dependency lock: the project's runtime dependencies, pinned to the versions
installed in the environment that builds (and tested) the release."""

from __future__ import annotations

from importlib import metadata

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


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
