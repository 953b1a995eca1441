"""Which released version serves which user clusters: the traffic assignment of one environment.

The assignment is not part of any version (versions are immutable, traffic moves). It is an
append-only history in the environment's store: every change is a new record
`traffic/{time}-{id}.json`, written create-only, with who changed it, when and why; the
current assignment is the latest record. Every user cluster is served by exactly one version
at any moment: an assignment with a gap or an overlap is refused before it is written.

Batch inference reads it when a run starts and the online router reads it per request
(cached for a second), so a change takes effect without recompiling or restarting anything.
The record format is read by every released version's code: extend it, never change it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from {{ cookiecutter.package }}.artifacts.store import ArtifactStore, StoreError
from {{ cookiecutter.package }}.errors import UserError, shown

PREFIX = "traffic/"
# Cluster numbers of at most 6 digits: a longer one cannot exist, and Python refuses to
# parse integers of more than 4300 digits with a traceback.
_SPEC = re.compile(r"^\d{1,6}(-\d{1,6})?(,\d{1,6}(-\d{1,6})?)*$")


class TrafficError(UserError, ValueError):
    """An assignment that would leave a cluster unserved, served twice, or by a wrong version."""


def parse_clusters(spec: str, n_clusters: int) -> list[int]:
    """`"4-7"`, `"0,2"` or `"0-1,5"` -> sorted cluster numbers, each below `n_clusters`."""
    text = spec.replace(" ", "")
    if not _SPEC.match(text):
        raise TrafficError(
            f"invalid clusters {shown(spec)}: use numbers and ranges, e.g. 4-7 or 0,2,5"
        )
    clusters: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        first, last = int(low), int(high or low)
        if first > last:
            raise TrafficError(f"invalid range {part!r}: {first} > {last}")
        clusters.update(range(first, last + 1))
    outside = sorted(c for c in clusters if c >= n_clusters)
    if outside:
        raise TrafficError(
            f"user cluster {outside[0]} does not exist: clusters are 0-{n_clusters - 1}"
        )
    return sorted(clusters)


def format_clusters(clusters: Iterable[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5"; [] -> "-"; repeated and unordered clusters are one set."""
    ordered = sorted(set(clusters))
    runs: list[list[int]] = []
    for cluster in ordered:
        if runs and cluster == runs[-1][1] + 1:
            runs[-1][1] = cluster
        else:
            runs.append([cluster, cluster])
    return ",".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs) or "-"


@dataclass(frozen=True)
class Assignment:
    """version -> user clusters, for `n_clusters` clusters, plus who set it and why."""

    clusters: dict[str, list[int]]
    n_clusters: int
    author: str = ""
    reason: str = ""
    created_at: str = ""
    # What a promotion or a guard decided on (`reports.ab.Verdict.evidence`); None for a
    # move by hand.
    evidence: dict[str, Any] | None = None
    key: str = field(default="", compare=False)  # where it is stored; empty before

    def clusters_of(self, version: str) -> list[int]:
        return sorted(self.clusters.get(version, []))

    def owner(self, cluster: int) -> str | None:
        return next((v for v, cs in self.clusters.items() if cluster in cs), None)

    def share(self, version: str) -> float:
        return len(self.clusters_of(version)) / self.n_clusters

    def validate(self, live: Iterable[str]) -> None:
        """Every cluster served by exactly one version, and only live versions serve."""
        live = set(live)
        for version, clusters in self.clusters.items():
            if clusters and version not in live:
                raise TrafficError(
                    f"version {version} is not live here (released and not retired): it cannot "
                    f"serve clusters {format_clusters(clusters)}; a retired version is made live "
                    f"again with `inv revive --version {version}`"
                )
        owners: dict[int, str] = {}
        for version, clusters in sorted(self.clusters.items()):
            for cluster in clusters:
                if cluster in owners:
                    raise TrafficError(
                        f"user cluster {cluster} would be served by both {owners[cluster]} "
                        f"and {version}"
                    )
                owners[cluster] = version
        gaps = [c for c in range(self.n_clusters) if c not in owners]
        if gaps:
            raise TrafficError(
                f"user clusters {format_clusters(gaps)} would be served by no version"
            )

    def moved(self, moves: Mapping[str, Iterable[int]]) -> dict[str, list[int]]:
        """The clusters after giving each version in `moves` its clusters, taken from
        whoever has them now."""
        taken = {c for cs in moves.values() for c in cs}
        result = {v: [c for c in cs if c not in taken] for v, cs in self.clusters.items()}
        for version, clusters in moves.items():
            result[version] = sorted({*result.get(version, []), *clusters})
        return {v: cs for v, cs in result.items() if cs}

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "clusters": {v: sorted(cs) for v, cs in sorted(self.clusters.items())},
            "n_clusters": self.n_clusters,
            "author": self.author,
            "reason": self.reason,
            "created_at": self.created_at,
        }
        if self.evidence is not None:
            data["evidence"] = self.evidence
        return json.dumps(data, indent=2)


class CorruptRecordError(StoreError):
    """The newest traffic record cannot be read: a full assignment supersedes it."""


def _parse(key: str, text: str, where: str = "") -> Assignment:
    try:
        data = json.loads(text)
        return Assignment(
            clusters={str(v): [int(c) for c in cs] for v, cs in data["clusters"].items()},
            n_clusters=int(data["n_clusters"]),
            author=str(data.get("author", "")),
            reason=str(data.get("reason", "")),
            created_at=str(data.get("created_at", "")),
            evidence=dict(data["evidence"]) if data.get("evidence") else None,
            key=key,
        )
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise CorruptRecordError(
            f"{where or key} is not a traffic record ({shown(str(error))}): record a new "
            "assignment over it with `inv traffic --all VERSION` (or --assign of every cluster)"
        ) from None


def history(store: ArtifactStore) -> list[Assignment]:
    """Every assignment of the environment, oldest first; unreadable records are left out
    (`history_entries` shows them)."""
    return [entry for entry in history_entries(store) if isinstance(entry, Assignment)]


def history_entries(store: ArtifactStore) -> list[Assignment | CorruptRecordError]:
    """Every record of the environment, oldest first, an unreadable one as its error."""
    entries: list[Assignment | CorruptRecordError] = []
    for key in store.list(PREFIX):
        try:
            entries.append(_read(store, key))
        except CorruptRecordError as error:
            entries.append(error)
    return entries


def current(store: ArtifactStore) -> Assignment | None:
    """The assignment in force: the latest record; None before the first release."""
    keys = store.list(PREFIX)
    return _read(store, keys[-1]) if keys else None


def _read(store: ArtifactStore, key: str) -> Assignment:
    return _parse(key, store.read_text(key), store.uri(key))


def clusters_for(store: ArtifactStore, version: str) -> list[int] | None:
    """The clusters `version` serves now; None when the environment has no assignment yet
    (then a run serves every cluster: there is only one version to ask)."""
    assignment = current(store)
    return None if assignment is None else assignment.clusters_of(version)


def author() -> str:
    """Who changes traffic: the CI actor, else git's user, else the login name."""
    if os.environ.get("GITHUB_ACTOR"):
        return f"{os.environ['GITHUB_ACTOR']} (GitHub Actions)"
    try:
        name = subprocess.run(
            ["git", "config", "user.name"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        email = subprocess.run(
            ["git", "config", "user.email"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        name = email = ""
    if name:
        return f"{name} <{email}>" if email else name
    return os.environ.get("USER", "unknown")


def record(
    store: ArtifactStore,
    clusters: Mapping[str, Iterable[int]],
    n_clusters: int,
    live: Iterable[str],
    reason: str,
    evidence: dict[str, Any] | None = None,
) -> Assignment:
    """Validate and append a new assignment (with the evidence it was decided on); it is in
    force from now on."""
    created = datetime.now(UTC)
    assignment = Assignment(
        clusters={v: sorted(cs) for v, cs in clusters.items() if list(cs)},
        n_clusters=n_clusters,
        author=author(),
        reason=reason,
        created_at=created.isoformat(timespec="seconds"),
        evidence=evidence,
    )
    assignment.validate(live)
    key = f"{PREFIX}{created:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}.json"
    store.write_text(key, assignment.to_json())
    return _parse(key, assignment.to_json())
