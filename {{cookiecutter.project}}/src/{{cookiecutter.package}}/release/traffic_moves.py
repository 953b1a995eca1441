"""`inv traffic` and the traffic side of release, retire and rollback.

A/B by user cluster, canary and blue/green are all one operation: recording which live
version serves which clusters (see `artifacts.traffic`). A live version is one that is
released in this environment and not retired (its schedules are enabled).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from packaging.version import Version

from {{ cookiecutter.package }}.artifacts import traffic
from {{ cookiecutter.package }}.artifacts.names import check_version
from {{ cookiecutter.package }}.artifacts.traffic import Assignment, format_clusters
from {{ cookiecutter.package }}.errors import ReleaseError, shown
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.release.sweep_records import refuse_unservable
from {{ cookiecutter.package }}.release.workflows import is_enabled, released_versions

ON_RELEASE = ("dark", "switch", "canary")


def n_clusters(ctx: ReleaseContext) -> int:
    return int(ctx.cfg.traffic.n_user_clusters)


def live_versions(ctx: ReleaseContext) -> list[str]:
    return [
        version
        for version in released_versions(ctx)
        if ctx.store.exists(ctx.names_of(version).release_record_key) and is_enabled(ctx, version)
    ]


def change(
    ctx: ReleaseContext,
    moves: Mapping[str, Iterable[int]],
    reason: str,
    extra_live: Iterable[str] = (),
    evidence: dict[str, Any] | None = None,
) -> Assignment:
    """Give each version of `moves` its clusters (taken from their owners) and record it.

    A change that gives out every cluster does not depend on the assignment in force, so it
    is recorded without reading it: that is how an unreadable record is superseded. Each
    live version given clusters must be able to answer (`refuse_unservable`); one that is
    not live is refused by the record's own check.
    """
    live = [*live_versions(ctx), *extra_live]
    for version, clusters in moves.items():
        if version in live and list(clusters):
            refuse_unservable(ctx, version, "move clusters to")
    total = n_clusters(ctx)
    covers_all = {c for cs in moves.values() for c in cs} >= set(range(total))
    now = None if covers_all else traffic.current(ctx.store)
    base = now.clusters if now is not None else {}
    if now is not None and now.n_clusters != total:
        raise ReleaseError(
            f"traffic.n_user_clusters is {n_clusters(ctx)} but the current assignment has "
            f"{now.n_clusters} clusters: change it with a full `inv traffic --all VERSION`"
        )
    current = Assignment(dict(base), n_clusters(ctx))
    return traffic.record(
        ctx.store,
        current.moved({v: list(cs) for v, cs in moves.items()}),
        n_clusters(ctx),
        live=live,
        reason=reason,
        evidence=evidence,
    )


def assign(ctx: ReleaseContext, specs: list[str], reason: str = "") -> Assignment:
    """`inv traffic --assign 0.2.0=4-7 [--assign ...]`."""
    moves: dict[str, list[int]] = {}
    for spec in specs:
        version, sep, clusters = spec.partition("=")
        if not sep:
            raise ReleaseError(
                f"invalid assignment {shown(spec)}: write VERSION=CLUSTERS, e.g. 0.2.0=4-7"
            )
        check_version(version.strip())
        moves.setdefault(version.strip(), []).extend(
            traffic.parse_clusters(clusters, n_clusters(ctx))
        )
    moves = {v: sorted(set(cs)) for v, cs in moves.items()}  # 0-3,2-5 is 0-5
    text = ", ".join(f"{v}={format_clusters(cs)}" for v, cs in moves.items())
    return change(ctx, moves, reason or f"assign {text}")


def switch(ctx: ReleaseContext, version: str, reason: str = "") -> Assignment:
    """`inv traffic --all VERSION`: blue/green, every cluster to one version."""
    check_version(version)
    return change(ctx, {version: range(n_clusters(ctx))}, reason or f"all clusters to {version}")


def on_release_change(ctx: ReleaseContext) -> tuple[list[int], str] | None:
    """The clusters a release of this version takes now (`release.on_release`) and why;
    None when it keeps what it has. The plan shows it, the release records it."""
    version, total = ctx.names.version, n_clusters(ctx)
    now = traffic.current(ctx.store)
    policy = str(ctx.cfg.release.on_release)
    if now is None:  # nothing serves yet: the first release serves everyone
        return list(range(total)), f"first release {version}"
    if policy == "switch" and len(now.clusters_of(version)) < total:
        return list(range(total)), f"release {version}: switch"
    if policy == "canary" and not now.clusters_of(version):
        count = max(1, round(float(ctx.cfg.release.canary_share) * total))
        return list(range(total - count, total)), f"release {version}: canary"
    return None


def on_release(ctx: ReleaseContext) -> Assignment | None:
    """The traffic a new release gets (`release.on_release`); idempotent on a rerun."""
    version = ctx.names.version
    planned = on_release_change(ctx)
    if planned is not None:
        clusters, reason = planned
        return change(ctx, {version: clusters}, reason, [version])
    if str(ctx.cfg.release.on_release) == "dark" and not serving(ctx, version):
        print(
            f"{version} is live without traffic (release.on_release: dark); move clusters "
            f"with `inv traffic --assign {version}=<clusters>` or `--all {version}`"
        )
    return None


def check_policy(ctx: ReleaseContext) -> None:
    policy = str(ctx.cfg.release.on_release)
    if policy not in ON_RELEASE:
        raise ReleaseError(f"unknown release.on_release {policy!r}: use {', '.join(ON_RELEASE)}")


def rollback_moves(ctx: ReleaseContext, to: str, retired: Iterable[str]) -> dict[str, list[int]]:
    """What `inv rollback --to X` gives X: the clusters it served last, and every cluster of
    the versions the rollback retires."""
    now = traffic.current(ctx.store)
    if now is None:
        return {}
    clusters = {c for version in retired for c in now.clusters_of(version)}
    for past in reversed(traffic.history(ctx.store)):
        if past.clusters_of(to):
            clusters.update(past.clusters_of(to))
            break
    return {to: sorted(clusters)} if clusters else {}


def serving(ctx: ReleaseContext, version: str) -> list[int]:
    """The clusters `version` serves now (none before the first assignment)."""
    return traffic.clusters_for(ctx.store, version) or []


def describe(
    ctx: ReleaseContext, assignment: Assignment | None, also_live: Iterable[str] = ()
) -> str:
    if assignment is None:
        return f"no traffic assignment on {ctx.env} yet: the first release serves every cluster"
    lines = [
        f"traffic on {ctx.env} ({assignment.n_clusters} user clusters), "
        f"since {assignment.created_at} by {assignment.author}: {assignment.reason}"
    ]
    live = [*live_versions(ctx), *also_live]
    for version in sorted({*live, *assignment.clusters}, key=Version):
        clusters = assignment.clusters_of(version)
        lines.append(
            f"  {version:<12} clusters {format_clusters(clusters):<16} "
            f"{assignment.share(version):>5.0%}{'' if version in live else '  (not live)'}"
        )
    return "\n".join(lines)


def describe_history(ctx: ReleaseContext) -> str:
    entries = traffic.history_entries(ctx.store)
    if not entries:
        return f"no traffic changes on {ctx.env} yet"
    lines = []
    for entry in entries:
        if isinstance(entry, traffic.CorruptRecordError):
            lines.append(f"unreadable record: {entry}")
            continue
        split = "  ".join(f"{v}={format_clusters(cs)}" for v, cs in sorted(entry.clusters.items()))
        lines.append(f"{entry.created_at}  {split}  -- {entry.reason} ({entry.author})")
        if entry.evidence:
            lines.append(f"    evidence: {describe_evidence(entry.evidence)}")
    return "\n".join(lines)


def describe_evidence(evidence: Mapping[str, Any]) -> str:
    """A recorded comparison as one line (`ml.paired.Verdict.evidence`)."""
    low, high = (evidence.get("interval") or [None, None])[:2]

    def number(value: Any) -> str:
        return "?" if value is None else f"{float(value):+.3f}"

    text = (
        f"{evidence.get('candidate')} vs {evidence.get('control')}: n={evidence.get('n')}, "
        f"MAE difference {number(evidence.get('difference'))} min "
        f"[{number(low)}, {number(high)}], {evidence.get('verdict')}"
    )
    return f"{text}, forced" if evidence.get("forced") else text
