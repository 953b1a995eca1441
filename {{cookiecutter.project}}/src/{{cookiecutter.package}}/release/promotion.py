"""`inv traffic --promote` and `--guard`: traffic moved on evidence, and recorded with it.

A promotion moves a version one step along `release.promotion_steps` (shares of the user
clusters) only when its paired verdict against the control passes the gates
(`release.gates`: better or equivalent overall, and no user cluster `worse` after Holm's
adjustment), and from the second step on only on fresh evidence: at least
`min_new_outcomes` paired outcomes (and `min_hours_between_steps`) since the last step, as
progressive delivery waits between steps; `--force --reason` overrides, recorded as forced.
The guard gives the clusters of every version whose verdict is `worse` back to the
control. Both write the comparison they decided on into the traffic record.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from {{ cookiecutter.package }}.artifacts import traffic
from {{ cookiecutter.package }}.artifacts.names import check_version
from {{ cookiecutter.package }}.artifacts.traffic import Assignment, format_clusters
from {{ cookiecutter.package }}.errors import ReleaseError
from {{ cookiecutter.package }}.release import evidence
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.release.traffic_moves import change, live_versions, n_clusters


def steps(ctx: ReleaseContext) -> list[float]:
    shares = sorted(float(s) for s in ctx.cfg.release.promotion_steps)
    if not shares or any(not 0 < s <= 1 for s in shares):
        raise ReleaseError(f"release.promotion_steps must be shares in (0, 1], got {list(shares)}")
    return shares


def next_clusters(ctx: ReleaseContext, version: str, now: Assignment | None) -> list[int]:
    """`version`'s clusters after one more step: its own, and the highest-numbered others
    (the clusters a canary takes first) up to the next step's share."""
    total = n_clusters(ctx)
    have = now.clusters_of(version) if now else []
    counts = [max(1, round(share * total)) for share in steps(ctx)]
    target = next((count for count in counts if count > len(have)), None)
    if target is None:
        raise ReleaseError(f"{version} already serves every user cluster: nothing to promote")
    others = [c for c in reversed(range(total)) if c not in have]
    return sorted([*have, *others[: target - len(have)]])


def promote(ctx: ReleaseContext, version: str, force: bool = False, reason: str = "") -> Assignment:
    """Move `version` one promotion step, if its verdict passes the gates (or `force`)."""
    check_version(version)
    if force and not reason.strip():
        raise ReleaseError("--force needs --reason: say why the gate is overridden")
    live = live_versions(ctx)
    if version not in live:
        raise ReleaseError(f"version {version} is not live on {ctx.env}: it cannot be promoted")
    now = traffic.current(ctx.store)
    clusters = next_clusters(ctx, version, now)
    control = evidence.default_control(now, live, besides=version)
    comparison = evidence.compare(ctx, version, control)
    verdict = comparison.overall
    if not verdict.passes and not force:
        raise ReleaseError(
            f"{version} is not promoted: {verdict.summary()}; the gates (release.gates) need "
            "better or equivalent (`--force --reason WHY` overrides)"
        )
    worse = comparison.worse_clusters()
    if worse and not force:
        raise ReleaseError(
            f"{version} is not promoted: worse than {control} in user cluster(s) "
            f"{format_clusters(worse)} (Holm-adjusted, {comparison.clusters[worse[0]].summary()})"
            "; the gates refuse a version worse for some users (`--force --reason WHY` overrides)"
        )
    fresh = {} if force else fresh_evidence(ctx, version, verdict.n)
    share = len(clusters) / n_clusters(ctx)
    why = f"promote {version} to {format_clusters(clusters)} ({share:.0%}): {verdict.verdict}"
    if force:
        why += f", forced: {reason.strip()}"
    elif reason:
        why += f" ({reason.strip()})"
    return change(
        ctx,
        {version: clusters},
        why,
        evidence={**comparison.evidence(), **fresh, "forced": force},
    )


def last_step(ctx: ReleaseContext, version: str) -> Assignment | None:
    """The latest promotion of `version` that was decided on evidence (not forced)."""
    for entry in reversed(traffic.history(ctx.store)):
        evidence = entry.evidence or {}
        if entry.reason.startswith(f"promote {version} ") and not evidence.get("forced"):
            return entry
    return None


def fresh_evidence(ctx: ReleaseContext, version: str, n: int) -> dict[str, int]:
    """Refuse a step taken on the evidence of the previous one: progressive delivery waits
    for `release.gates.min_new_outcomes` paired outcomes (and `min_hours_between_steps`)
    since `version`'s last step. Returns what the record keeps of it."""
    gates = ctx.cfg.release.gates
    needed = int(gates.get("min_new_outcomes", 0))
    hours = float(gates.get("min_hours_between_steps", 0))
    previous = last_step(ctx, version)
    if previous is None:
        return {"new_outcomes": n}
    seen = int((previous.evidence or {}).get("n") or 0)
    new = n - seen
    if new < needed:
        raise ReleaseError(
            f"{version} is not promoted: {new} new paired outcomes since its last step "
            f"({previous.created_at}, n={seen}); release.gates.min_new_outcomes needs "
            f"{needed}, about {needed - new} more (`--force --reason WHY` overrides)"
        )
    stepped = datetime.fromisoformat(previous.created_at) if previous.created_at else None
    waited = (datetime.now(UTC) - stepped).total_seconds() if stepped else math.inf
    if waited < hours * 3600:
        raise ReleaseError(
            f"{version} is not promoted: its last step was {waited / 3600:.1f} h ago "
            f"({previous.created_at}); release.gates.min_hours_between_steps is {hours:g} "
            "(`--force --reason WHY` overrides)"
        )
    return {"new_outcomes": new}


def guard(ctx: ReleaseContext) -> list[Assignment]:
    """Give the clusters of every version that is `worse` than the control back to it;
    nothing changes when no version is worse. Returns the records written."""
    now = traffic.current(ctx.store)
    live = live_versions(ctx)
    if now is None or len(live) < 2:
        print("guard: fewer than two live versions, nothing to compare")
        return []
    control = evidence.default_control(now, live)
    written = []
    for version in sorted(now.clusters):
        if version == control or version not in live:
            continue
        comparison = evidence.compare(ctx, version, control)
        verdict = comparison.overall
        print(f"guard: {verdict.summary()}")
        if verdict.verdict != "worse":
            continue
        clusters = traffic.current(ctx.store).clusters_of(version)  # type: ignore[union-attr]
        record = change(
            ctx,
            {control: clusters},
            f"guard: {version} is worse than {control}, clusters "
            f"{format_clusters(clusters)} back to {control}",
            evidence={**comparison.evidence(), "forced": False},
        )
        print(f"guard: clusters {format_clusters(clusters)} moved from {version} to {control}")
        written.append(record)
    if not written:
        print("guard: no live version is worse than the control: traffic unchanged")
    return written
