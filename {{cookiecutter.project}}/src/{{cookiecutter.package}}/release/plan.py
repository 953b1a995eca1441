"""`inv release`: preflight, then the release steps in order, then the record.

The steps are data (`RELEASE_STEPS`): each names what it makes, how to tell that its result
exists and how to make it. The plan and `--dry-run` look at every step's resources; the
release makes every step; `inv build`, `inv train-adhoc` and `inv deploy-workflow` make
theirs. Every step first looks at whether its result exists, so a release that died half
way is finished by running it again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from {{ cookiecutter.package }}.artifacts import models
from {{ cookiecutter.package }}.artifacts.code import CodeRecord, read_code
from {{ cookiecutter.package }}.artifacts.names import WORKFLOWS
from {{ cookiecutter.package }}.artifacts.store import StoreError
from {{ cookiecutter.package }}.artifacts.traffic import format_clusters
from {{ cookiecutter.package }}.errors import ReleaseError, UserError
from {{ cookiecutter.package }}.pipelines.openlineage_runs import job_run
from {{ cookiecutter.package }}.pipelines.step_table import describe_resources
from {{ cookiecutter.package }}.release import image, traffic_moves
from {{ cookiecutter.package }}.release.code_publishing import publish_code
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.release.lifecycle import keep_newest_live
from {{ cookiecutter.package }}.release.preflight import is_released, preflight, refusals
from {{ cookiecutter.package }}.release.workflows import (
    deploy_workflows,
    model_released,
    resources_of,
    train_adhoc,
)


@dataclass(frozen=True)
class Resource:
    step: str
    name: str
    exists: bool
    note: str = ""
    skipped: bool = False
    unknown: bool = False  # the dry run could not tell (a service it cannot reach): `note`

    def line(self) -> str:
        state = "exists" if self.exists else "skipped" if self.skipped else "will be created"
        state = "unknown" if self.unknown else state
        note = f"  ({self.note})" if self.note else ""
        return f"  {self.step:<10} {state:<16} {self.name}{note}"


@dataclass(frozen=True)
class ReleaseStep:
    """One step of a release: what it makes (`resources`, and whether they exist) and how
    (`make`, given HEAD's commit; its value goes into the release record as `record`)."""

    name: str
    resources: Callable[[ReleaseContext], list[Resource]]
    make: Callable[[ReleaseContext, str], Any]
    record: str = ""


# -- what each step makes, and whether it exists -------------------------------------------


def _tag_resources(ctx: ReleaseContext) -> list[Resource]:
    commit = ctx.git.tag_commit(ctx.names.git_tag)
    return [
        Resource(
            "tag", ctx.names.git_tag, commit is not None, f"at {commit[:12]}" if commit else ""
        )
    ]


def _image_resources(ctx: ReleaseContext) -> list[Resource]:
    built = image.state(ctx)
    return [Resource("image", built.reference, built.exists, built.note, skipped=built.skipped)]


def _code_resources(ctx: ReleaseContext) -> list[Resource]:
    names = ctx.names
    return [
        Resource("code", names.uri(names.code_record_key), read_code(ctx.store, names) is not None)
    ]


def _training_resources(ctx: ReleaseContext) -> list[Resource]:
    names, features = ctx.names, ctx.feature_store
    pinned = names.feature_version != names.version
    return [
        Resource(
            "features",
            features.location(names.feature_version),
            features.exists(names.feature_version),
            f"pinned feature version {names.feature_version}" if pinned else "",
        ),
        Resource(
            "model",
            names.uri(names.model_metadata_key),
            model_released(ctx),
            f"trained by a run of {ctx.engine.address(names, 'training')}",
        ),
    ]


def _workflow_resources(ctx: ReleaseContext) -> list[Resource]:
    # Asked of the engine, as `inv versions` does: KFP's pipeline versions, Airflow's DAG
    # files, Vertex AI's templates in Artifact Registry.
    names, resources = ctx.names, resources_of(ctx)
    return [
        *[
            Resource(
                "workflow",
                ctx.engine.address(names, w),
                ctx.engine.registered(names, w),
                describe_resources(resources, w),
            )
            for w in WORKFLOWS
        ],
        Resource(
            "schedules",
            ", ".join(names.recurring_run_name(w) for w in WORKFLOWS),
            bool(ctx.engine.schedules(names)),
        ),
    ]


def _traffic_resources(ctx: ReleaseContext) -> list[Resource]:
    """The user clusters the release gives the version (`release.on_release`)."""
    try:
        change = traffic_moves.on_release_change(ctx)
        serving = traffic_moves.serving(ctx, ctx.names.version)
    except StoreError as error:
        return [Resource("traffic", "unknown", False, str(error))]
    if change is not None:
        return [Resource("traffic", f"clusters {format_clusters(change[0])}", False, change[1])]
    if serving:
        return [Resource("traffic", f"clusters {format_clusters(serving)}", True)]
    return [
        Resource(
            "traffic",
            "no clusters",
            False,
            "release.on_release: dark, move them later",
            skipped=True,
        )
    ]


# -- how each step makes it ------------------------------------------------------------------


def _tag(ctx: ReleaseContext, head: str) -> None:
    tagged = ctx.git.tag_commit(ctx.names.git_tag)
    if tagged is not None:  # preflight checked that its tree is HEAD's
        same = "" if tagged == head else f" at {tagged[:12]}, same files as HEAD"
        print(f"tag {ctx.names.git_tag} exists{same}")
        return
    ctx.git.create_tag(ctx.names.git_tag, f"Release {ctx.names.version}")
    print(f"tagged {head[:12]} as {ctx.names.git_tag}")


def _code(ctx: ReleaseContext, head: str) -> dict[str, Any]:
    record: CodeRecord = publish_code(ctx, head)
    print(f"{ctx.names.version} {ctx.engine.prepare(ctx.names)}")
    return asdict(record)


def _traffic(ctx: ReleaseContext, head: str) -> None:
    """The new version's traffic (release.on_release), then retire what keep_live allows."""
    assignment = traffic_moves.on_release(ctx)
    if assignment is not None:
        print(traffic_moves.describe(ctx, assignment, also_live=[ctx.names.version]))
    keep_newest_live(ctx)


RELEASE_STEPS: tuple[ReleaseStep, ...] = (
    ReleaseStep("tag", _tag_resources, _tag),
    ReleaseStep("build", _image_resources, lambda ctx, head: image.build(ctx), record="image"),
    ReleaseStep("code", _code_resources, _code, record="code"),
    ReleaseStep("train-adhoc", _training_resources, train_adhoc),
    ReleaseStep("deploy-workflow", _workflow_resources, deploy_workflows),
    ReleaseStep("traffic", _traffic_resources, _traffic),
)


def _record_resource(ctx: ReleaseContext) -> Resource:
    names = ctx.names
    return Resource("record", names.uri(names.release_record_key), is_released(ctx))


def plan(ctx: ReleaseContext, offline: bool = False) -> list[Resource]:
    """What the release of this version consists of, and which parts exist already. With
    `offline` (the dry run), a step whose state needs a service that refuses (no
    credentials, no network) is `unknown`, with the one-line reason: the plan says what can
    be known; its refusals say the rest."""
    found = []
    for step in RELEASE_STEPS:
        try:
            found += step.resources(ctx)
        except UserError as error:
            if not offline:
                raise
            found.append(Resource(step.name, "-", False, str(error), unknown=True))
    return [*found, _record_resource(ctx)]


def print_plan(ctx: ReleaseContext, resources: list[Resource]) -> None:
    print(f"release {ctx.names.project} {ctx.names.version} to {ctx.env}:")
    for resource in resources:
        print(resource.line())


def make_steps(
    ctx: ReleaseContext, head: str, only: Iterable[str] | None = None
) -> tuple[dict[str, Any], dict[str, float]]:
    """Make the release steps in order (only those named in `only`, when given): what each
    returned for the record, and how long each took."""
    wanted = set(only) if only is not None else None
    unknown = (wanted or set()) - {step.name for step in RELEASE_STEPS}
    if unknown:
        raise ReleaseError(f"no release step {', '.join(sorted(unknown))}")
    made: dict[str, Any] = {}
    timings: dict[str, float] = {}
    framed = wanted is None  # a whole release shows its steps; a single-step task its output
    # A rerun after a kill: what the killed attempt's writes left half way goes first. Only
    # a local store has any (an upload to a bucket is whole or absent), and a step that
    # does not touch a bucket (`inv build`) must not need its credentials.
    local = "://" not in ctx.names.artifact_root
    if local and (removed := ctx.store.remove_debris(ctx.names.written_prefixes)):
        print(f"removed {removed} temporary file(s) that a killed attempt left", flush=True)
    for step in RELEASE_STEPS:
        if wanted is not None and step.name not in wanted:
            continue
        if framed:
            print(f"==> {step.name}", flush=True)
        started = time.perf_counter()
        value = step.make(ctx, head)
        if step.record:
            made[step.record] = value
        timings[step.name] = round(time.perf_counter() - started, 3)
        if framed:
            print(f"    {step.name}: done ({timings[step.name]:.1f} s)", flush=True)
    return made, timings


def release(ctx: ReleaseContext, dry_run: bool = False) -> dict:
    """Release this version; returns the release record (written last)."""
    if dry_run:
        found = refusals(ctx, dry_run=True)
        for refusal in found:
            print(f"refused: {refusal}")
        print_plan(ctx, plan(ctx, offline=True))
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
    names = ctx.names
    # The release as one lineage run: the parent of the workflow runs it starts.
    with job_run(ctx.lineage, f"{names.project}.release", "JOB") as running:
        ctx.lineage_parent = running.ref if ctx.lineage.enabled else None
        try:
            made, timings = make_steps(ctx, head)
        finally:
            ctx.lineage_parent = None
    record = {
        "project": names.project,
        "version": names.version,
        "env": ctx.env,
        "git_sha": head,
        "git_tag": names.git_tag,
        "image": made.get("image"),
        "code": made["code"],
        "feature_version": names.feature_version,
        # The model's metadata without its resolved config (that stays in metadata.json).
        "model": {k: v for k, v in models.read_metadata(ctx.store, names).items() if k != "config"},
        "workflows": {w: names.uri(names.workflow_key(w)) for w in WORKFLOWS},
        "schedules": [asdict(s) for s in ctx.engine.schedules(names)],
        "user_clusters": traffic_moves.serving(ctx, names.version),
        "existed_before": [r.step + ":" + r.name for r in resources if r.exists],
        "timings_s": timings,
        "released_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    ctx.store.write_text(names.release_record_key, json.dumps(record, indent=2))
    print(f"released {names.version} to {ctx.env}: {names.uri(names.release_record_key)}")
    return record
