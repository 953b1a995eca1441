"""Retention: the heavy artifacts of retired versions removed by policy, in two phases, each
removal recorded (`inv gc`, `conf/retention/`).

What is kept is decided at sweep time from live sources, never from a list kept somewhere:
- every version whose schedules are enabled (live, dark, or in an A/B window) or that
  serves user clusters in the current traffic assignment;
- every version newer than the newest one serving clusters (dark, or waiting for traffic);
- the newest `retention.keep_retired` retired versions (the rollback window);
- the versions in `retention.pinned`;
- what a kept version needs of another: the feature version it was trained on.

A version outside that set is first tombstoned: `retention/tombstones/<version>.json` lists
exactly what will go (URI, sha256, bytes). Only a tombstone older than `retention.grace_days`
is swept, and the keep set is computed again before each removal: a version brought back
(a rollback, a traffic move) in the meantime keeps everything, and its tombstone is
withdrawn. Each removal leaves an append-only record, `retention/audit/<version>/`, and a
swept version `retention/swept/<version>.json`; its metadata, release record, run records
and workflows stay, so `inv versions` still shows it, marked swept.

What goes, in this order: what the engine keeps of the version (DAG files and DAGs,
pipeline versions and recurring runs: `Engine.holdings`), its image in the registry (by
digest, unless a kept version's tag names the same digest), its model object, its own
feature version unless a kept version uses it (Parquet objects, or BigQuery tables or rows:
`FeatureStore.holdings`), its prediction objects older than `retention.predictions_days`,
and its local environment (with its warm worker). Outcomes stay: they belong to a batch of
trips, not to a version, and every version's comparison reads them. Objects that no record
names (a publish race's loser, a killed write) go after the grace period too
(`release.debris`). A kill at any point leaves a state the next `inv gc --apply` finishes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from packaging.version import Version

from {{ cookiecutter.package }}.artifacts import models, traffic
from {{ cookiecutter.package }}.artifacts.store import (
    AlreadyExistsError,
    Held,
    StoreError,
    read_record,
)
from {{ cookiecutter.package }}.errors import ReleaseError
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.release.debris import freed_bytes, remove_unnamed, unnamed
from {{ cookiecutter.package }}.release.image import delete_pushed, pushed
from {{ cookiecutter.package }}.release.sweep_records import (
    AUDIT,
    SWEEPING,
    SWEPT,
    TOMBSTONES,
    sweeping,
    tombstone,
)
from {{ cookiecutter.package }}.release.workflows import is_enabled, released_versions


@dataclass(frozen=True)
class Removal:
    """One thing a sweep removes: a store object (`key`), a local folder (`path`), or what
    `uri` names to its owner (the engine, the registry, the feature store)."""

    version: str
    kind: str  # workflow | image | model | features | predictions | environment
    uri: str
    sha256: str
    bytes: int
    key: str = ""
    path: str = ""


@dataclass(frozen=True)
class Policy:
    keep_retired: int
    grace_days: float
    predictions_days: float
    pinned: tuple[str, ...]

    @classmethod
    def of(cls, ctx: ReleaseContext) -> Policy:
        spec = ctx.cfg.get("retention") or {}
        try:
            policy = cls(
                int(spec.get("keep_retired", 2)),
                float(spec.get("grace_days", 7)),
                float(spec.get("predictions_days", 90)),
                tuple(str(v) for v in spec.get("pinned") or ()),
            )
        except (TypeError, ValueError) as error:
            raise ReleaseError(f"retention: {error}") from error
        if policy.keep_retired < 0 or policy.grace_days < 0 or policy.predictions_days < 0:
            raise ReleaseError(
                "retention: keep_retired, grace_days and predictions_days must be >= 0"
            )
        return policy


# -- what is kept -----------------------------------------------------------------------------


def record_of(ctx: ReleaseContext, version: str) -> dict[str, Any] | None:
    key = ctx.names_of(version).release_record_key
    return read_record(ctx.store, key, "a release record")


def keep_set(ctx: ReleaseContext, policy: Policy) -> dict[str, str]:
    """Every released version that stays whole, with why; read now, from the schedules,
    the traffic assignment and the release records."""
    versions = [v for v in released_versions(ctx) if record_of(ctx, v) is not None]
    assignment = traffic.current(ctx.store)
    serving = [v for v in versions if assignment is not None and assignment.clusters_of(v)]
    keep: dict[str, str] = {}
    for version in versions:
        if version in serving:
            keep[version] = "serves user clusters"
        elif serving and Version(version) > max(Version(v) for v in serving):
            keep[version] = "newer than every serving version (dark, or an A/B candidate)"
        elif is_enabled(ctx, version):
            keep[version] = "live (its schedules are enabled)"
        elif version in policy.pinned:
            keep[version] = "pinned (retention.pinned)"
    # A swept version cannot be rolled back to: it takes no place in the window.
    retired = [v for v in versions if v not in keep and sweeping(ctx, v) is None]
    window = retired[len(retired) - policy.keep_retired :] if policy.keep_retired else []
    for version in window:
        keep[version] = f"in the rollback window (retention.keep_retired={policy.keep_retired})"
    return keep


def kept_feature_versions(ctx: ReleaseContext, keep: dict[str, str]) -> set[str]:
    found = set()
    for version in keep:
        record = record_of(ctx, version) or {}
        found.add(str(record.get("feature_version") or version))
    return found


# -- what would go ----------------------------------------------------------------------------


def _removal(version: str, kind: str, held: Held) -> Removal:
    return Removal(version, kind, held.address, held.sha256, held.bytes, key=held.key)


def removals(
    ctx: ReleaseContext, version: str, policy: Policy, keep: dict[str, str], now: datetime
) -> list[Removal]:
    """What a sweep of `version` removes, as it stands now, in the order it goes: what runs
    the version first (its schedules and pipelines), then what they would read."""
    names = ctx.names_of(version)
    found = [Removal(version, "workflow", a, "", 0) for a in ctx.engine.holdings(names)]
    image = pushed(ctx, version)
    if image is not None and image.digest not in kept_digests(ctx, keep):
        found.append(Removal(version, "image", image.reference, image.digest, image.bytes))
    if models.released(ctx.store, names):
        metadata = models.read_metadata(ctx.store, names)
        for key, digest in (("model_key", "model_sha256"), ("serving_key", "serving_sha256")):
            if key in metadata and ctx.store.exists(metadata[key]):  # the pickle, its numpy form
                model = ctx.store.held(metadata[key], metadata[digest])
                found.append(_removal(version, "model", model))
    record = record_of(ctx, version) or {}
    own_features = str(record.get("feature_version") or version) == version
    if own_features and version not in kept_feature_versions(ctx, keep):
        found += [_removal(version, "features", h) for h in ctx.feature_store.holdings(version)]
    cutoff = now - timedelta(days=policy.predictions_days)
    old_runs = ctx.predictions.holdings(version, cutoff)
    found += [_removal(version, "predictions", held) for held in old_runs]
    for folder in sorted(ctx.environments.root.glob(f"{version}-*")):
        size = freed_bytes(folder)  # hard links into uv's cache free nothing
        found.append(Removal(version, "environment", str(folder), "", size, path=str(folder)))
    return found


def kept_digests(ctx: ReleaseContext, keep: dict[str, str]) -> set[str]:
    """The image digests kept versions run: an image two versions share stays."""
    return {image.digest for v in keep if (image := pushed(ctx, v)) is not None}


# -- the two phases ---------------------------------------------------------------------------


def _remove(ctx: ReleaseContext, removal: Removal) -> None:
    names = ctx.names_of(removal.version)
    if removal.kind == "environment":
        from {{ cookiecutter.package }}.engines.worker_homes import WorkerHome, ask

        home = WorkerHome(Path(removal.path))
        if home.socket_path.exists():
            ask(home.socket_path, {"op": "stop"})
        shutil.rmtree(removal.path, ignore_errors=True)
    elif removal.kind == "workflow":
        ctx.engine.forget(names, removal.uri)
    elif removal.kind == "image":
        image = pushed(ctx, removal.version)
        if image is not None and image.digest != removal.sha256:
            raise StoreError(f"{names.image} now names {image.digest}: left in place")
        if image is not None:
            delete_pushed(ctx, image)
    elif removal.key:
        if ctx.store.exists(removal.key):
            current = ctx.store.read(removal.key)
            if hashlib.sha256(current).hexdigest() != removal.sha256:
                raise StoreError(f"{removal.uri} changed since it was tombstoned: left in place")
            ctx.store.delete(removal.key)
    else:  # what BigQuery keeps: a feature version's table or rows, a run's rows
        held = Held(removal.uri, removal.bytes, removal.sha256)
        owner = ctx.feature_store if removal.kind == "features" else ctx.predictions
        owner.remove(removal.version, held)


def _audit(ctx: ReleaseContext, number: int, removal: Removal, why: str, at: str) -> None:
    key = f"{AUDIT}{removal.version}/{number:05d}-{removal.kind}.json"
    # Create-only: a rerun after a kill finds the record of what it already removed.
    with contextlib.suppress(AlreadyExistsError):
        ctx.store.write_text(key, json.dumps({**asdict(removal), "removed_at": at, "why": why}))


def gc(ctx: ReleaseContext, apply: bool = False, now: datetime | None = None) -> dict[str, Any]:
    """`inv gc`: list what retention would remove (dry run), or tombstone and sweep."""
    now = now or datetime.now(UTC)
    policy = Policy.of(ctx)
    keep = keep_set(ctx, policy)
    versions = [v for v in released_versions(ctx) if record_of(ctx, v) is not None]
    report: dict[str, Any] = {
        "kept": keep,
        "tombstoned": {},
        "waiting": {},  # tombstoned earlier, within the grace period: version -> (due, ...)
        "swept": {},
        "withdrawn": [],
        "unnamed": {},  # objects of a publish race's loser or a killed write: version -> Held
    }
    for version in versions:
        found = unnamed(ctx, version, now, policy.grace_days)
        if found:
            report["unnamed"][version] = found
            if apply:
                remove_unnamed(ctx, version, found, now.isoformat(timespec="seconds"))
    for version in versions:
        if ctx.store.exists(f"{SWEPT}{version}.json"):
            continue
        marked = tombstone(ctx, version)
        if marked is not None and sweeping(ctx, version) is not None:  # past its commit point
            report["swept"][version] = [Removal(**r) for r in marked["removals"]]
            if apply:
                _sweep(ctx, version, marked, policy, report, now)
            continue
        if version in keep:
            if marked is not None:  # brought back since it was tombstoned: all stays
                report["withdrawn"].append(f"{version}: {keep[version]}")
                if apply:
                    ctx.store.delete(f"{TOMBSTONES}{version}.json")
            continue
        if marked is None:
            planned = removals(ctx, version, policy, keep, now)
            report["tombstoned"][version] = planned
            if apply:
                record = {
                    "version": version,
                    "created_at": now.isoformat(timespec="seconds"),
                    "why": "retired, outside the rollback window",
                    "removals": [asdict(r) for r in planned],
                }
                # A concurrent gc may have tombstoned it first: the same listing.
                with contextlib.suppress(AlreadyExistsError):
                    ctx.store.write_text(f"{TOMBSTONES}{version}.json", json.dumps(record))
            continue
        due = datetime.fromisoformat(marked["created_at"]) + timedelta(days=policy.grace_days)
        if now < due:
            report["waiting"][version] = (due, [Removal(**r) for r in marked["removals"]])
            continue
        report["swept"][version] = [Removal(**r) for r in marked["removals"]]
        if apply:
            _sweep(ctx, version, marked, policy, report, now)
    return report


def _sweep(
    ctx: ReleaseContext,
    version: str,
    marked: dict[str, Any],
    policy: Policy,
    report: dict[str, Any],
    now: datetime,
) -> None:
    """Remove what the tombstone lists. The commit point (`sweeping`) is written before the
    first removal, once the keep set says the version is still not wanted; from then on
    nothing brings the version back (`sweep_records`), and a rerun after a kill finishes."""
    at = now.isoformat(timespec="seconds")
    if sweeping(ctx, version) is None:
        keep = keep_set(ctx, policy)
        if version in keep:
            ctx.store.delete(f"{TOMBSTONES}{version}.json")
            report["swept"].pop(version, None)
            report["withdrawn"].append(f"{version}: {keep[version]}")
            return
        with contextlib.suppress(AlreadyExistsError):  # a concurrent gc committed it too
            ctx.store.write_text(
                f"{SWEEPING}{version}.json", json.dumps({"version": version, "started_at": at})
            )
    for number, fields in enumerate(marked["removals"]):
        keep = keep_set(ctx, policy)  # again, right before each removal
        if version in keep and keep[version].startswith(("serves user clusters", "pinned")):
            # Every move to a version being swept is refused; one that raced the commit
            # point keeps what is left, and says so loudly.
            raise ReleaseError(
                f"{version} is being swept but {keep[version]}: nothing more removed; "
                f"move its clusters away (or unpin it), then run `inv gc --apply` again"
            )
        removal = Removal(**fields)
        if removal.kind == "features" and version in kept_feature_versions(ctx, keep):
            continue  # a kept version uses them now
        if removal.kind == "image" and removal.sha256 in kept_digests(ctx, keep):
            continue  # a kept version runs the same image
        _remove(ctx, removal)
        _audit(ctx, number, removal, str(marked["why"]), at)
    total = sum(int(r["bytes"]) for r in marked["removals"])
    with contextlib.suppress(AlreadyExistsError):
        ctx.store.write_text(
            f"{SWEPT}{version}.json",
            json.dumps({"version": version, "swept_at": at, "bytes": total}),
        )
