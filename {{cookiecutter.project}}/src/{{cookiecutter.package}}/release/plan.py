"""`inv release`: preflight, then tag -> image -> training -> workflows -> record.

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

from {{ cookiecutter.package }}.release import image
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.release.errors import ReleaseError
from {{ cookiecutter.package }}.release.names import WORKFLOWS
from {{ cookiecutter.package }}.release.store import StoreError
from {{ cookiecutter.package }}.release.workflows import (
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

    def line(self) -> str:
        state = "exists" if self.exists else "will be created"
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
        Resource("image", builder_state.reference, builder_state.exists, builder_state.note),
        Resource(
            "features",
            names.uri(names.features_prefix),
            store.exists(names.features_key("train")),
            ""
            if names.feature_version == names.version
            else f"pinned feature version {names.feature_version}",
        ),
        Resource("model", names.uri(names.model_key), model_released(ctx)),
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
        Resource("record", names.uri(names.release_record_key), is_released(ctx)),
    ]


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
    """Refuse before anything is touched: released, dirty, wrong branch, unreachable."""
    names = ctx.names
    if is_released(ctx):
        raise ReleaseError(
            f"version {names.version} is already released on {ctx.env} "
            f"({names.uri(names.release_record_key)}); bump the version in "
            "pyproject.toml (e.g. `poetry version patch`)"
        )
    dirty = ctx.git.dirty_paths()
    if dirty:
        raise ReleaseError(
            f"working tree is not clean ({', '.join(dirty[:3])}"
            f"{' ...' if len(dirty) > 3 else ''}); commit or stash first"
        )
    branch = ctx.git.branch()
    allowed = [str(b) for b in ctx.cfg.env.allowed_branches]
    if not any(fnmatch.fnmatchcase(branch, pattern) for pattern in allowed):
        raise ReleaseError(
            f"branch {branch!r} may not release to {ctx.env} (allowed: {', '.join(allowed)})"
        )
    tag_commit = ctx.git.tag_commit(names.git_tag)
    head = ctx.git.head()
    if tag_commit is not None and tag_commit != head:
        raise ReleaseError(
            f"tag {names.git_tag} already marks commit {tag_commit[:12]}, not "
            f"HEAD {head[:12]}: released code never changes, bump the version"
        )
    try:
        ctx.store.check()
    except StoreError as error:
        raise ReleaseError(f"artifact store unreachable: {error}") from error
    ctx.engine.check()


def release(ctx: ReleaseContext, dry_run: bool = False) -> dict:
    """Release this version; returns the release record (written last)."""
    if dry_run:
        print_plan(ctx, plan(ctx))
        print("dry run: nothing was changed")
        return {}
    preflight(ctx)
    resources = plan(ctx)
    print_plan(ctx, resources)
    head = ctx.git.head()
    timings: dict[str, float] = {}

    def step(name: str, action: Callable[[], object]) -> None:
        print(f"==> {name}")
        started = time.perf_counter()
        action()
        timings[name] = round(time.perf_counter() - started, 3)

    step("tag", lambda: _tag(ctx, head))
    built: dict[str, str | None] = {}
    step("build", lambda: built.update(image=image.build(ctx)))
    step("train-adhoc", lambda: train_adhoc(ctx, head))
    step("deploy-workflow", lambda: deploy_workflows(ctx, head))
    record = {
        "project": ctx.names.project,
        "version": ctx.names.version,
        "env": ctx.env,
        "git_sha": head,
        "git_tag": ctx.names.git_tag,
        "image": built.get("image"),
        "feature_version": ctx.names.feature_version,
        "model": json.loads(ctx.store.read_text(ctx.names.model_metadata_key)),
        "workflows": {w: ctx.names.uri(ctx.names.workflow_key(w)) for w in WORKFLOWS},
        "schedules": [asdict(s) for s in ctx.engine.schedules(ctx.names)],
        "existed_before": [r.step + ":" + r.name for r in resources if r.exists],
        "timings_s": timings,
        "released_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    record["model"].pop("config", None)
    ctx.store.write_text(ctx.names.release_record_key, json.dumps(record, indent=2))
    record_uri = ctx.names.uri(ctx.names.release_record_key)
    print(f"released {ctx.names.version} to {ctx.env}: {record_uri}")
    return record


def _tag(ctx: ReleaseContext, head: str) -> None:
    if ctx.git.tag_commit(ctx.names.git_tag) == head:
        print(f"tag {ctx.names.git_tag} exists")
        return
    ctx.git.create_tag(ctx.names.git_tag, f"Release {ctx.names.version}")
    print(f"tagged {head[:12]} as {ctx.names.git_tag}")
