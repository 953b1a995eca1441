"""Batch-inference runs started from here: `inv run-scheduled` (a local scheduler's tick)
and `inv run-inference` (one version, once).

What runs unattended is complete or loud:
- one tick at a time: a tick holds a lease in the artifact store (`artifacts.leases`), so
  two ticks started together, on one machine or two, never predict the same interval twice;
- a tick never predicts again what a version already predicted (`--rerun` asks for it);
- time is checked: an interval that ends in the future (beyond one period from now) is
  refused, and the next tick starts where the last run that is not in the future ended.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from {{ cookiecutter.package }}.artifacts import prediction_runs, traffic
from {{ cookiecutter.package }}.artifacts.intervals import Interval, IntervalError
from {{ cookiecutter.package }}.artifacts.leases import lease
from {{ cookiecutter.package }}.artifacts.names import Workflow, check_run_id, new_run_id
from {{ cookiecutter.package }}.errors import ReleaseError
from {{ cookiecutter.package }}.pipelines.step_table import parameters_of
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.release.workflows import (
    RUN_TIMEOUT_S,
    released_versions,
    run_workflow,
)

# A tick's lease outlives any tick (a run is stopped after RUN_TIMEOUT_S); a holder killed
# on this machine is taken over at once, one on another machine when its lease expires.
DEFAULT_LOCK_SECONDS = RUN_TIMEOUT_S + 600


def interval_arguments(spec: str, interval: Interval | None) -> dict[str, str]:
    """The interval as arguments of a compiled inference workflow; none for a version
    released before workflows took one (it predicts its batch as it always did)."""
    if interval is None or "start" not in parameters_of(spec):
        return {}
    return {"start": interval.start.isoformat(), "end": interval.end.isoformat()}


def _period(ctx: ReleaseContext) -> int:
    return int(ctx.cfg.schedules.inference.interval_seconds)


def checked(interval: Interval, period_seconds: int, now: datetime | None = None) -> Interval:
    """`interval`, unless it ends after now plus one period: its trips cannot exist yet,
    and a run recorded there would move every later tick's start into the future."""
    latest = (now or datetime.now(UTC)) + timedelta(seconds=period_seconds)
    if interval.end > latest:
        raise IntervalError(
            f"the interval {interval} ends in the future (after {latest:%Y-%m-%d %H:%M} UTC, "
            "now plus one period): give an end that has passed"
        )
    return interval


def tick_interval(ctx: ReleaseContext, start: str = "", end: str = "") -> Interval:
    """A local tick's data interval: as given, else the period since the last recorded run
    of any version ended (the schedule's period before the first) up to now. A run that
    ends in the future (written by hand, or by an older template) is not where ticks
    continue from."""
    now = datetime.now(UTC)
    if start or end:
        return checked(Interval.resolve(start, end, "", _period(ctx), now), _period(ctx), now)
    since = prediction_runs.last_end(ctx.store, released_versions(ctx), until=now)
    if since is None or since >= now:
        return Interval.resolve("", "", "", _period(ctx), now)
    return Interval(since, now)


def _predicted_already(ctx: ReleaseContext, version: str, interval: Interval) -> str | None:
    """The id of a run of `version` whose interval overlaps `interval`, if any."""
    for record in prediction_runs.read(ctx.store, version):
        found = prediction_runs.interval_of(record)
        if found is not None and found.start < interval.end and interval.start < found.end:
            return f"{record.get('run_id')} {found}"
    return None


def run_scheduled(
    ctx: ReleaseContext,
    workflow: Workflow = "inference",
    start: str = "",
    end: str = "",
    rerun: bool = False,
) -> list[str]:
    """Fire every enabled local schedule of `workflow` once, each version with its own code
    and its schedule's parameters: what the next tick of a scheduler would start.

    The inference runs of one tick share their data interval (`tick_interval`), their
    batch (one seed) and their run id, so with `traffic.shadow` every live version predicts
    the same trips; without it, a version that serves no cluster is skipped. Kubeflow
    Pipelines and Airflow fire recurring runs themselves; locally, call this from cron or a
    loop: a tick started while another runs exits in one line (the lease).
    """
    if str(ctx.cfg.env.engine) != "local":
        raise ReleaseError(f"{ctx.env} runs its schedules itself: `run-scheduled` is for local")
    seconds = float(ctx.cfg.schedules.get("lock_seconds") or DEFAULT_LOCK_SECONDS)
    with lease(ctx.store, f"scheduled-{workflow}", seconds, f"a scheduled {workflow} tick"):
        return _fire(ctx, workflow, start, end, rerun)


def _fire(ctx: ReleaseContext, workflow: Workflow, start: str, end: str, rerun: bool) -> list[str]:
    shadow = bool(ctx.storage["shadow"])
    interval = tick_interval(ctx, start, end) if workflow == "inference" else None
    if interval is not None:
        print(f"inference tick: the trips of {interval}")
    tick = {"seed": uuid.uuid4().int % 2**31, "run_id": new_run_id()}
    outputs = []
    for version in released_versions(ctx):
        names = ctx.names_of(version)
        for schedule in ctx.engine.schedules(names):
            if schedule.enabled and schedule.workflow == workflow:
                parameters = dict(schedule.parameters)
                spec = ctx.store.read_text(names.workflow_key(workflow))
                if workflow == "inference":
                    if not shadow and traffic.clusters_for(ctx.store, version) == []:
                        print(f"{schedule.name}: skipped, {version} serves no user clusters now")
                        continue
                    assert interval is not None  # every inference tick has one
                    earlier = None if rerun else _predicted_already(ctx, version, interval)
                    if earlier is not None:
                        print(
                            f"{schedule.name}: skipped, {version} predicted this interval "
                            f"already (run {earlier}); --rerun predicts it again"
                        )
                        continue
                    parameters.update(tick, **interval_arguments(spec, interval))
                output = run_workflow(ctx, names, workflow, spec, parameters, RUN_TIMEOUT_S)
                print(f"{schedule.name}: {output}")
                outputs.append(output)
    return outputs


def run_inference(ctx: ReleaseContext, run_id: str = "", start: str = "", end: str = "") -> str:
    """Run the version's deployed inference pipeline once (the exact YAML in the store), on
    the trips of [start, end) (by default the schedule's period up to now)."""
    names = ctx.names
    if run_id:
        check_run_id(run_id)  # before anything runs: it becomes a file name
    now = datetime.now(UTC)
    interval = checked(Interval.resolve(start, end, "", _period(ctx), now), _period(ctx), now)
    key = names.workflow_key("inference")
    if not ctx.store.exists(key):
        raise ReleaseError(
            f"version {names.version} has no deployed inference workflow "
            f"({names.uri(key)}); run `inv deploy-workflow` first"
        )
    spec = ctx.store.read_text(key)
    # Named here, not by the run's tasks: every shard of the run writes under this id.
    arguments = {"run_id": run_id or new_run_id(), **interval_arguments(spec, interval)}
    output = run_workflow(ctx, names, "inference", spec, arguments, 3600)
    if output.endswith(prediction_runs.NOTHING_PREDICTED):
        print(f"{names.version}: {output}")
    else:
        print(f"predictions of {names.version}: {output}")
    return output
