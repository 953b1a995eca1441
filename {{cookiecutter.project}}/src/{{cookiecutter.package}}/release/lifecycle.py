"""Retiring, reviving and rolling back versions: their schedules (disabled, never deleted) and the
traffic that goes with them. A version that still serves user clusters is never retired."""

from __future__ import annotations

from packaging.version import Version

from {{ cookiecutter.package }}.artifacts.names import check_version
from {{ cookiecutter.package }}.artifacts.traffic import format_clusters
from {{ cookiecutter.package }}.errors import ReleaseError
from {{ cookiecutter.package }}.release import traffic_moves
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.release.sweep_records import refuse_if_swept
from {{ cookiecutter.package }}.release.workflows import is_enabled, released_versions


def keep_newest_live(ctx: ReleaseContext) -> None:
    """Disable the schedules of enabled versions beyond the newest `release.keep_live`,
    except those that still serve user clusters."""
    enabled = [v for v in released_versions(ctx) if is_enabled(ctx, v)]
    keep = int(ctx.cfg.release.keep_live)
    for version in enabled[: max(0, len(enabled) - keep)]:
        clusters = traffic_moves.serving(ctx, version)
        if clusters:
            print(f"kept {version} live: it serves user clusters {format_clusters(clusters)}")
            continue
        ctx.engine.set_enabled(ctx.names_of(version), False)
        print(f"retired {version}: more than {keep} live versions")


def _deployed(ctx: ReleaseContext, version: str) -> list[str]:
    check_version(version)
    versions = released_versions(ctx)
    if version not in versions:
        raise ReleaseError(f"version {version} has no deployed workflows on {ctx.env}")
    return versions


def retire(ctx: ReleaseContext, version: str) -> None:
    _deployed(ctx, version)
    clusters = traffic_moves.serving(ctx, version)
    if clusters:
        raise ReleaseError(
            f"version {version} still serves user clusters {format_clusters(clusters)}: move "
            f"them first, e.g. `inv traffic --assign <version>={format_clusters(clusters)}`"
        )
    ctx.engine.set_enabled(ctx.names_of(version), False)
    print(f"schedules of {version} disabled")


def revive(ctx: ReleaseContext, version: str) -> None:
    """Make a retired version live again with no user clusters (its schedules re-enabled);
    move traffic to it afterwards with `inv traffic`."""
    _deployed(ctx, version)
    refuse_if_swept(ctx, version, "revive")
    if not ctx.store.exists(ctx.names_of(version).release_record_key):
        raise ReleaseError(
            f"version {version} was never fully released on {ctx.env}: finish its release "
            "(`inv release` on its commit)"
        )
    if is_enabled(ctx, version):
        raise ReleaseError(f"version {version} is live already: move clusters with `inv traffic`")
    ctx.engine.set_enabled(ctx.names_of(version), True)
    print(
        f"{version} is live again with no user clusters: give it some with "
        f"`inv traffic --assign {version}=<clusters>`"
    )


def rollback(ctx: ReleaseContext, to: str) -> None:
    """Re-enable `to`, give it back its clusters and those of every newer version, and
    disable every newer version."""
    versions = _deployed(ctx, to)
    refuse_if_swept(ctx, to, "roll back to")
    if not ctx.store.exists(ctx.names_of(to).release_record_key):
        raise ReleaseError(f"version {to} was never fully released on {ctx.env}")
    newer = [v for v in versions if Version(v) > Version(to) and is_enabled(ctx, v)]
    ctx.engine.set_enabled(ctx.names_of(to), True)
    moves = traffic_moves.rollback_moves(ctx, to, newer)
    if moves:
        traffic_moves.change(ctx, moves, f"rollback to {to}")
        print(f"user clusters {format_clusters(moves[to])} moved to {to}")
    for version in newer:
        ctx.engine.set_enabled(ctx.names_of(version), False)
        print(f"schedules of {version} disabled")
    print(f"schedules of {to} enabled")
