"""`inv release`: preflight, then tag -> image -> code -> training -> workflows -> traffic
-> record.

Every step first looks at whether its result exists, so a release that died half way is
finished by running it again, and `--dry-run` is the same look without the doing.
"""

from __future__ import annotations

import fnmatch
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from {{ cookiecutter.package }}.artifacts import models
from {{ cookiecutter.package }}.artifacts.code import CodeRecord, read_code
from {{ cookiecutter.package }}.artifacts.names import WORKFLOWS
from {{ cookiecutter.package }}.artifacts.store import StoreError
from {{ cookiecutter.package }}.artifacts.traffic import format_clusters
from {{ cookiecutter.package }}.errors import ReleaseError, UserError
from {{ cookiecutter.package }}.release import image, inputs, traffic
from {{ cookiecutter.package }}.release.code import promotion_source, publish_code
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.release.lifecycle import keep_newest_live
from {{ cookiecutter.package }}.release.workflows import (
    check_features_source,
    deploy_workflows,
    model_released,
    train_adhoc,
)


@dataclass(frozen=True)
class Resource:
    step: str
    name: str
    exists: bool
    note: str = ""
    skipped: bool = False

    def line(self) -> str:
        state = "exists" if self.exists else "skipped" if self.skipped else "will be created"
        note = f"  ({self.note})" if self.note else ""
        return f"  {self.step:<10} {state:<16} {self.name}{note}"


def plan(ctx: ReleaseContext) -> list[Resource]:
    """What the release of this version consists of, and which parts exist already."""
    names, store = ctx.names, ctx.store
    tag_commit = ctx.git.tag_commit(names.git_tag)
    builder_state = image.state(ctx)
    return [
        Resource(
            "tag",
            names.git_tag,
            tag_commit is not None,
            f"at {tag_commit[:12]}" if tag_commit else "",
        ),
        Resource(
            "image",
            builder_state.reference,
            builder_state.exists,
            builder_state.note,
            skipped=builder_state.skipped,
        ),
        Resource("code", names.uri(names.code_record_key), read_code(store, names) is not None),
        Resource(
            "features",
            ctx.feature_store.location(names.feature_version),
            ctx.feature_store.exists(names.feature_version),
            ""
            if names.feature_version == names.version
            else f"pinned feature version {names.feature_version}",
        ),
        Resource("model", names.uri(names.model_metadata_key), model_released(ctx)),
        # Asked of the engine, as `inv versions` does: on dev/prod, KFP's pipeline versions.
        *[
            Resource("workflow", names.uri(names.workflow_key(w)), ctx.engine.registered(names, w))
            for w in WORKFLOWS
        ],
        Resource(
            "schedules",
            ", ".join(names.recurring_run_name(w) for w in WORKFLOWS),
            bool(ctx.engine.schedules(names)),
        ),
        _traffic_resource(ctx),
        Resource("record", names.uri(names.release_record_key), is_released(ctx)),
    ]


def _traffic_resource(ctx: ReleaseContext) -> Resource:
    """The user clusters the release gives the version (`release.on_release`)."""
    try:
        change = traffic.on_release_change(ctx)
        serving = traffic.serving(ctx, ctx.names.version)
    except StoreError as error:
        return Resource("traffic", "unknown", False, str(error))
    if change is not None:
        return Resource("traffic", f"clusters {format_clusters(change[0])}", False, change[1])
    if serving:
        return Resource("traffic", f"clusters {format_clusters(serving)}", True)
    return Resource(
        "traffic", "no clusters", False, "release.on_release: dark, move them later", skipped=True
    )


def print_plan(ctx: ReleaseContext, resources: list[Resource]) -> None:
    print(f"release {ctx.names.project} {ctx.names.version} to {ctx.env}:")
    for resource in resources:
        print(resource.line())


def is_released(ctx: ReleaseContext) -> bool:
    """The release record is written last: its presence means every step completed."""
    try:
        return ctx.store.exists(ctx.names.release_record_key)
    except StoreError as error:
        raise ReleaseError(f"artifact store unreachable: {error}") from error


def preflight(ctx: ReleaseContext) -> None:
    """Refuse before anything is touched; the first refusal is the error."""
    found = refusals(ctx)
    if found:
        raise ReleaseError(found[0])


def refusals(ctx: ReleaseContext) -> list[str]:
    """Every reason the release of this version would be refused, in the order checked.

    The release stops at the first; `--dry-run` lists them all.
    """
    found: list[str] = []
    for check in (
        check_not_released,
        check_clean_tree,
        check_branch,
        check_tag,
        check_store,
        check_promotion,
        image.check,
        check_data_source,
        check_pinned_features,
        check_features_source,
        traffic.check_policy,
        check_config,
        lambda ctx: ctx.engine.check(),
    ):
        try:
            check(ctx)
        except UserError as error:
            if str(error) not in found:
                found.append(str(error))
    return found


def check_not_released(ctx: ReleaseContext) -> None:
    names = ctx.names
    if is_released(ctx):
        raise ReleaseError(
            f"version {names.version} is already released on {ctx.env} "
            f"({names.uri(names.release_record_key)}); bump the version in "
            "pyproject.toml (`inv bump`)"
        )


def check_clean_tree(ctx: ReleaseContext) -> None:
    ctx.git.require_clean("commit or stash first")


def check_branch(ctx: ReleaseContext) -> None:
    branch = ctx.git.branch()
    allowed = [str(b) for b in ctx.cfg.env.allowed_branches]
    if not any(fnmatch.fnmatchcase(branch, pattern) for pattern in allowed):
        raise ReleaseError(
            f"branch {branch!r} may not release to {ctx.env} (allowed: {', '.join(allowed)})"
        )


def check_tag(ctx: ReleaseContext) -> None:
    # A version moves between environments by content: the tag marks the commit it was
    # first released from, and any commit with the same release inputs (a merge of develop
    # into main, fast-forward or not, or one that only touched the README) may release it
    # elsewhere. Other inputs need a new version.
    names = ctx.names
    tag_commit = ctx.git.tag_commit(names.git_tag)
    if tag_commit is None:
        return
    inputs.check_same_inputs(
        ctx.git, tag_commit, ctx.git.head(), f"tag {names.git_tag} marks commit {tag_commit[:12]}"
    )


def check_promotion(ctx: ReleaseContext) -> None:
    """An environment that promotes (`env.promote_from`) can read this version's code there,
    built from HEAD's release inputs, unless it has the code already."""
    if ctx.cfg.env.get("promote_from") and read_code(ctx.store, ctx.names) is None:
        promotion_source(ctx, ctx.git.head())


def check_released_unchanged(ctx: ReleaseContext) -> None:
    """`--skip-released` (CD on every merge): a released version is fine only while HEAD
    has its release inputs; a change under it (a hotfix without a bump) is refused."""
    record = json.loads(ctx.store.read_text(ctx.names.release_record_key))
    inputs.check_unchanged(
        ctx.git, ctx.names.version, ctx.git.head(), str(record.get("git_sha", ""))
    )


def check_store(ctx: ReleaseContext) -> None:
    try:
        ctx.store.check()
    except StoreError as error:
        raise ReleaseError(f"artifact store unreachable: {error}") from error


def check_config(ctx: ReleaseContext) -> None:
    """The resolved training configuration, checked as training would use it."""
    from {{ cookiecutter.package }}.ml.train import check_training_config

    cfg = ctx.cfg
    try:
        check_training_config(ctx.plain_config()["model"], cfg.data.n_trips, cfg.data.test_fraction)
    except ValueError as error:
        raise ReleaseError(f"invalid configuration: {error}") from None


def check_data_source(ctx: ReleaseContext) -> None:
    """The configured data source can be read (its files exist, its settings make sense)."""
    from {{ cookiecutter.package }}.artifacts.data_sources import DataSourceError

    try:
        ctx.data_source.check()
    except DataSourceError as error:
        raise ReleaseError(str(error)) from error


def check_pinned_features(ctx: ReleaseContext) -> None:
    """Features pinned to another version are reused, never computed under that name."""
    names = ctx.names
    if names.feature_version == names.version:
        return
    if not ctx.feature_store.exists(names.feature_version):
        raise ReleaseError(
            f"pinned feature version {names.feature_version} does not exist on {ctx.env} "
            f"({ctx.feature_store.location(names.feature_version)}): release "
            f"{names.feature_version} to "
            f"{ctx.env} first (its training produces them), or unpin features.version"
        )


def release(ctx: ReleaseContext, dry_run: bool = False) -> dict:
    """Release this version; returns the release record (written last)."""
    if dry_run:
        found = refusals(ctx)
        for refusal in found:
            print(f"refused: {refusal}")
        print_plan(ctx, plan(ctx))
        if found:
            raise ReleaseError(
                f"the release would be refused ({len(found)} reason"
                f"{'s' if len(found) > 1 else ''} above); dry run: nothing was changed"
            )
        print("dry run: nothing was changed")
        return {}
    preflight(ctx)
    resources = plan(ctx)
    print_plan(ctx, resources)
    head = ctx.git.head()
    timings: dict[str, float] = {}

    def step(name: str, action: Callable[[], object]) -> None:
        print(f"==> {name}", flush=True)
        started = time.perf_counter()
        action()
        timings[name] = round(time.perf_counter() - started, 3)
        print(f"    {name}: done ({timings[name]:.1f} s)", flush=True)

    step("tag", lambda: _tag(ctx, head))
    built: dict[str, Any] = {}
    step("build", lambda: built.update(image=image.build(ctx)))
    step("code", lambda: built.update(code=_code(ctx, head)))
    step("train-adhoc", lambda: train_adhoc(ctx, head))
    step("deploy-workflow", lambda: deploy_workflows(ctx, head))
    step("traffic", lambda: _traffic(ctx))
    record = {
        "project": ctx.names.project,
        "version": ctx.names.version,
        "env": ctx.env,
        "git_sha": head,
        "git_tag": ctx.names.git_tag,
        "image": built.get("image"),
        "code": asdict(built["code"]),
        "feature_version": ctx.names.feature_version,
        # The model's metadata without its resolved config (that stays in metadata.json).
        "model": {
            k: v for k, v in models.read_metadata(ctx.store, ctx.names).items() if k != "config"
        },
        "workflows": {w: ctx.names.uri(ctx.names.workflow_key(w)) for w in WORKFLOWS},
        "schedules": [asdict(s) for s in ctx.engine.schedules(ctx.names)],
        "user_clusters": traffic.serving(ctx, ctx.names.version),
        "existed_before": [r.step + ":" + r.name for r in resources if r.exists],
        "timings_s": timings,
        "released_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    ctx.store.write_text(ctx.names.release_record_key, json.dumps(record, indent=2))
    record_uri = ctx.names.uri(ctx.names.release_record_key)
    print(f"released {ctx.names.version} to {ctx.env}: {record_uri}")
    return record


def _traffic(ctx: ReleaseContext) -> None:
    """The new version's traffic (release.on_release), then retire what keep_live allows."""
    assignment = traffic.on_release(ctx)
    if assignment is not None:
        print(traffic.describe(ctx, assignment, also_live=[ctx.names.version]))
    keep_newest_live(ctx)


def _code(ctx: ReleaseContext, head: str) -> CodeRecord:
    record = publish_code(ctx, head)
    print(f"{ctx.names.version} {ctx.engine.prepare(ctx.names)}")
    return record


def _tag(ctx: ReleaseContext, head: str) -> None:
    tagged = ctx.git.tag_commit(ctx.names.git_tag)
    if tagged is not None:  # preflight checked that its tree is HEAD's
        same = "" if tagged == head else f" at {tagged[:12]}, same files as HEAD"
        print(f"tag {ctx.names.git_tag} exists{same}")
        return
    ctx.git.create_tag(ctx.names.git_tag, f"Release {ctx.names.version}")
    print(f"tagged {head[:12]} as {ctx.names.git_tag}")
