"""A version's workflows: compile, run once (train-adhoc), register and schedule, retire."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from packaging.version import Version

from {{ cookiecutter.package }}.artifacts import models
from {{ cookiecutter.package }}.artifacts.data_sources import (
    describe,
    read_lineage,
    same_source,
)
from {{ cookiecutter.package }}.artifacts.names import (
    WORKFLOWS,
    ReleaseNames,
    Workflow,
)
from {{ cookiecutter.package }}.artifacts.store import AlreadyExistsError, StoreError
from {{ cookiecutter.package }}.artifacts.tracking import Tracker
from {{ cookiecutter.package }}.engines import Schedule
from {{ cookiecutter.package }}.errors import ReleaseError
from {{ cookiecutter.package }}.pipelines.openlineage_runs import job_run
from {{ cookiecutter.package }}.pipelines.step_table import parameters_of, task_resources
from {{ cookiecutter.package }}.release.context import ReleaseContext

RUN_TIMEOUT_S = 3 * 60 * 60  # a training or inference run is stopped after this


def workflow_parameters(ctx: ReleaseContext, workflow: Workflow, git_sha: str) -> dict[str, Any]:
    """The parameter defaults compiled into a version's pipeline."""
    cfg, names = ctx.cfg, ctx.names
    common: dict[str, Any] = {
        "release": names.to_json(),
        # Where lineage goes from the runs the engine starts by itself (a run `inv` starts
        # is given the current settings, and its parent: `run_workflow`).
        "lineage": ctx.lineage.to_json(),
        "rush_hours": list(cfg.features.rush_hours),
        "storage": json.dumps(ctx.storage, sort_keys=True),
    }
    if workflow == "training":
        return {
            **common,
            "n_trips": int(cfg.data.n_trips),
            "seed": int(cfg.data.seed),
            "test_fraction": float(cfg.data.test_fraction),
            "model_config": json.dumps(OmegaConf.to_container(cfg.model, resolve=True)),
            "git_sha": git_sha,
            # The model's config, as its metadata records it: where lineage goes and when
            # drift is reported are not part of what made the model (`same_workflow`).
            "config": json.dumps(
                {k: v for k, v in ctx.plain_config().items() if k not in ("lineage", "drift")},
                sort_keys=True,
            ),
        }
    # No user clusters here: which clusters a version serves is read from the traffic
    # assignment when each run starts, never compiled into a released pipeline.
    return {
        **common,
        "n_trips": int(cfg.data.inference_batch_size),
        "seed": -1,  # a fresh batch on every scheduled run
        "run_id": "",
        # The run's data interval: given at run time, else the schedule's period up to the
        # schedule time (Kubeflow) or up to now (`artifacts.intervals`).
        "start": "",
        "end": "",
        "period_seconds": int(cfg.schedules.inference.interval_seconds),
        # Each run's trips split by a stable hash of trip_id, a task per shard, in parallel.
        "shards": int(cfg.get("inference", {}).get("shards", 1)),
    }


def run_workflow(
    ctx: ReleaseContext,
    names: ReleaseNames,
    workflow: Workflow,
    spec: str,
    arguments: dict[str, Any],
    timeout_s: int,
) -> str:
    """Run a version's compiled workflow once through the engine, and wait: one lineage run
    of the workflow's job (the parent of its steps' runs; its own parent is the release
    running it, if any)."""
    job = names.airflow_dag_id(workflow)
    with job_run(ctx.lineage, job, "DAG", ctx.lineage_parent) as running:
        if "lineage" in parameters_of(spec):  # a version compiled before lineage has none
            parent = running.ref if ctx.lineage.enabled else None
            arguments = {**arguments, "lineage": ctx.lineage.to_json(parent)}
        return ctx.engine.run(names, workflow, spec, arguments, timeout_s)


def compile_spec(ctx: ReleaseContext, workflow: Workflow, git_sha: str) -> str:
    from {{ cookiecutter.package }}.pipelines.kfp_pipelines import compile_workflow

    return compile_workflow(
        workflow,
        ctx.names,
        ctx.names.image,
        workflow_parameters(ctx, workflow, git_sha),
        resources_of(ctx),
    )


def resources_of(ctx: ReleaseContext) -> dict[str, dict[str, str]]:
    """The CPU and memory of each workflow task (`pipelines.resources`), checked."""
    return task_resources(ctx.cfg.get("pipelines", {}).get("resources"))


def model_released(ctx: ReleaseContext) -> bool:
    return models.released(ctx.store, ctx.names)


def check_features_source(ctx: ReleaseContext) -> None:
    """Existing features are reused only as recorded: a data source configured differently
    from the one they were built from is refused (a new feature version reads it)."""
    names = ctx.names
    if model_released(ctx) or not ctx.feature_store.exists(names.feature_version):
        return
    try:
        lineage = read_lineage(names.artifact_root, names.feature_version)
    except StoreError as error:
        raise ReleaseError(str(error)) from error
    if lineage is not None and not same_source(lineage, ctx.data_source):
        raise ReleaseError(
            f"features {names.feature_version} were built from {describe(lineage)}; this "
            f"config reads {describe(ctx.data_source.identity())}: bump `features.version` "
            "or restore the source"
        )


def train_adhoc(ctx: ReleaseContext, git_sha: str) -> str:
    """Run the training pipeline of this version once: features (reused when that feature
    version exists and was read from the configured source), model (create-only), metrics.
    Waits for the result."""
    names = ctx.names
    if model_released(ctx):
        model = str(models.read_metadata(ctx.store, names)["model"])
        print(f"model {names.version} exists at {model}: nothing to train")
        return model
    check_features_source(ctx)
    features = "reuse" if ctx.feature_store.exists(names.feature_version) else "create"
    print(f"training {names.version} on {ctx.env} (features {names.feature_version}: {features})")
    spec = compile_spec(ctx, "training", git_sha)
    try:
        model = run_workflow(ctx, names, "training", spec, {}, RUN_TIMEOUT_S)
    except AlreadyExistsError as error:
        raise ReleaseError(str(error)) from error
    if features == "create":
        report_dropped_rows(ctx)
    track_training(ctx)
    return model


def report_dropped_rows(ctx: ReleaseContext) -> None:
    """Say what shaping dropped from the features just created (the step's log is not the
    release's output): `features 1.4.0: 6 rows dropped (distance_km: outside (0, 1000])`."""
    from {{ cookiecutter.package }}.ml.schema import dropped_rows

    lineage = read_lineage(ctx.names.artifact_root, ctx.names.feature_version) or {}
    dropped = dropped_rows(lineage.get("rows_invalid") or {})
    if dropped:
        print(f"features {ctx.names.feature_version}: {lineage.get('rows_valid')} rows, {dropped}")


def track_training(ctx: ReleaseContext) -> None:
    """The release's training as an MLflow run, when tracking is on: its config, metrics and
    the released model's URI and sha256, read back from the store (a failure is a warning)."""
    tracker = Tracker.from_config(ctx.cfg)
    if tracker is None:
        return
    metadata = models.read_metadata(ctx.store, ctx.names)
    name = f"release {ctx.names.version} ({ctx.env})"
    if not tracker.copy_model:
        tracker.log(name, metadata, "release", tags={"env": ctx.env})
        return
    with tempfile.TemporaryDirectory() as scratch:  # the verified bytes, under their name
        model = Path(scratch) / Path(str(metadata["model_key"])).name
        model.write_bytes(models.verified_bytes(ctx.store, ctx.names))
        tracker.log(name, metadata, "release", tags={"env": ctx.env}, model=model)


def deploy_workflows(ctx: ReleaseContext, git_sha: str) -> None:
    """Compile both pipelines into the store, register them, create the version's schedules."""
    names = ctx.names
    for workflow in WORKFLOWS:
        spec = compile_spec(ctx, workflow, git_sha)
        key = names.workflow_key(workflow)
        if ctx.store.exists(key):
            stored = ctx.store.read_text(key)
            if not same_workflow(stored, spec):
                raise ReleaseError(
                    f"{names.uri(key)} exists and differs from the {workflow} pipeline of this "
                    "checkout: a released workflow never changes, bump the version"
                )
            spec = stored  # lineage settings aside, the same: what was released stays
        else:
            ctx.store.write_text(key, spec)
        print(f"{workflow} workflow {names.version}: {ctx.engine.register(names, workflow, spec)}")
    if ctx.engine.schedules(names):
        print(f"schedules of {names.version} exist")
    else:
        ctx.engine.create_schedules(names, planned_schedules(ctx))
        print(f"schedules of {names.version} created")


def same_workflow(stored: str, compiled: str) -> bool:
    """Whether two compiled workflows are the same but for their lineage settings: where
    events go is observation, not behaviour, and may change without a new version (runs
    `inv` starts use the current settings; the engine's own runs keep the released ones)."""
    if stored == compiled:
        return True
    import yaml

    def without_lineage(spec: str) -> Any:
        loaded = yaml.safe_load(spec)
        loaded["root"]["inputDefinitions"]["parameters"].get("lineage", {}).pop("defaultValue", 0)
        return loaded

    return bool(without_lineage(stored) == without_lineage(compiled))


def planned_schedules(ctx: ReleaseContext) -> list[Schedule]:
    """Training every few days, inference every few minutes (conf/config.yaml `schedules`)."""
    cfg, names = ctx.cfg, ctx.names
    concurrency, no_catchup = int(cfg.schedules.max_concurrency), bool(cfg.schedules.no_catchup)
    return [
        Schedule(
            "training",
            names.recurring_run_name("training"),
            enabled=True,
            cron=str(cfg.schedules.training.cron),
            max_concurrency=concurrency,
            no_catchup=no_catchup,
        ),
        Schedule(
            "inference",
            names.recurring_run_name("inference"),
            enabled=True,
            interval_seconds=int(cfg.schedules.inference.interval_seconds),
            max_concurrency=concurrency,
            no_catchup=no_catchup,
        ),
    ]


def released_versions(ctx: ReleaseContext) -> list[str]:
    """Versions with compiled workflows in this environment's store, oldest first."""
    versions = {key.split("/")[1] for key in ctx.store.list("workflows/")}
    return sorted(versions, key=Version)


def is_enabled(ctx: ReleaseContext, version: str) -> bool:
    """Whether any schedule of `version` is enabled (retired versions have none)."""
    return any(s.enabled for s in ctx.engine.schedules(ctx.names_of(version)))
