"""The workflows' steps, declared once: this table is the training and inference workflows.

Each `Step` names an engine-neutral function of `pipelines.steps` (training) or
`pipelines.inference_steps`, the pipeline parameters it reads, the outputs of earlier steps
it consumes and the artifacts it produces. Everything an engine runs is derived from it:

- kfp: one component per step and one pipeline per workflow (`pipelines.kfp_pipelines`);
- commands (Airflow's tasks, `python -m {{ cookiecutter.package }}.pipelines.run_step TASK`):
  the steps grouped by `task`. Steps of one task pass their artifacts as files in one
  scratch folder, so a model never travels between Airflow workers.

Adding a step to a workflow is one entry here (and its function in `steps`). Every step
receives the release identity as one value, `release` (`ReleaseNames.to_json()`). How a
step is called, in a kfp component or a command task, is `pipelines.step_runs`; what with,
`pipelines.step_context`. The table imports neither.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from {{ cookiecutter.package }}.artifacts.names import Workflow
from {{ cookiecutter.package }}.errors import UserError
from {{ cookiecutter.package }}.pipelines import inference_steps, steps

if TYPE_CHECKING:
    from {{ cookiecutter.package }}.pipelines.step_context import StepRun

# Every pipeline parameter a step may read, with its type. Structured values travel as JSON
# strings: kfp's dict parameters go through protobuf Struct, which turns integers into floats.
PARAMETERS: dict[str, type] = {
    "release": str,  # ReleaseNames.to_json(): project, version, feature version, store root
    "lineage": str,  # where OpenLineage events go, and the run's parent (`openlineage_runs`)
    "n_trips": int,
    "seed": int,
    "rush_hours": list,
    "model_config": str,
    "test_fraction": float,
    "git_sha": str,
    "config": str,
    "storage": str,  # steps.storage(): feature store, predictions, data source, shaping
    "run_id": str,
    # An inference run's data interval (`artifacts.intervals`): given, or the schedule's
    # period up to the schedule time, or up to now.
    "start": str,
    "end": str,
    "period_seconds": int,
    "shards": int,  # an inference run's shards (`inference.shards`), each its own task
}
# Values the engine fills in at run time, not pipeline parameters: kfp binds them to its
# placeholders (`kfp_pipelines.RUNTIME_VALUES`); a command task reads them from its
# parameters when they are there, else gets "".
RUNTIME: dict[str, type] = {"schedule_time": str, "shard": int}
# What every step receives, whatever it declares.
COMMON = ("release", "lineage")
# The store's datasets a step may name as read or written, for its lineage events
# (`pipelines.step_lineage` resolves each kind to datasets).
READS = ("trips", "features", "model")
WRITES = ("features", "model", "predictions")
ARTIFACT_TYPES = ("Dataset", "Model", "Metrics")
RETURNED = "Output"  # kfp's name for a step's return value


@dataclass(frozen=True)
class Step:
    """One step of a workflow.

    `inputs` maps an argument to an earlier step's output (`"train_model.model"`) or its
    returned value (`"train_model"`); `outputs` maps each artifact it writes to its kfp type.
    `task` is the command (Airflow task) it runs in; consecutive steps may share one.
    `runtime` names values of RUNTIME it reads. A `fan_out` step runs once per shard of
    the run (`shards`), each its own task, in parallel; fan-out steps come last. `reads`
    and `writes` name the store's datasets it uses (READS, WRITES), for its lineage.
    """

    name: str
    call: Callable[[StepRun], Any]
    parameters: tuple[str, ...]
    task: str
    runtime: tuple[str, ...] = ()
    fan_out: bool = False
    returns: type = str
    inputs: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()

    @property
    def artifact_inputs(self) -> dict[str, str]:
        """The inputs that are earlier steps' artifacts (`step.output`), not values."""
        return {argument: source for argument, source in self.inputs.items() if "." in source}


WORKFLOW_STEPS: dict[Workflow, tuple[Step, ...]] = {
    "training": (
        Step(
            "build_features",
            lambda run: steps.ensure_features(
                run.names,
                run["n_trips"],
                run["seed"],
                run["rush_hours"],
                run.feature_store,
                run.data_source,
                run.invalid_share,
                steps.batch_rows(run.storage),
            ),
            parameters=("n_trips", "seed", "rush_hours", "storage"),
            task="build-features",
            reads=("trips",),
            writes=("features",),
        ),
        # Fit and evaluate in one step: both need scikit-learn, which takes seconds to import.
        Step(
            "train_model",
            lambda run: steps.train_and_evaluate(
                run.names,
                run.json("model_config"),
                run["test_fraction"],
                run["seed"],
                run.path("model"),
                run.feature_store,
                steps.train_rows(run.storage),
                run.path("sample"),
            ),
            parameters=("model_config", "test_fraction", "seed", "storage"),
            outputs={"model": "Model", "metrics": "Metrics", "sample": "Dataset"},
            returns=dict,
            task="train",
            reads=("features",),
        ),
        Step(
            "publish_model",
            lambda run: steps.publish_model(
                run.names,
                run.path("model"),
                run["metrics"],
                run["git_sha"],
                run.json("config"),
                run.feature_store,
                run.path("sample"),
            ),
            parameters=("git_sha", "config", "storage"),
            inputs={
                "model": "train_model.model",
                "metrics": "train_model",
                "sample": "train_model.sample",
            },
            task="train",
            writes=("model",),
        ),
    ),
    "inference": (
        Step(
            "make_batch_features",
            lambda run: inference_steps.make_batch_features(
                run.names,
                run["n_trips"],
                run["seed"],
                run["rush_hours"],
                run.path("features"),
                run.path("batch"),
                inference_steps.batch_interval(
                    run["start"], run["end"], run["schedule_time"], run["period_seconds"]
                ),
                run.data_source,
                run.invalid_share,
                steps.shadow_of(run.storage),
                run["shard"],
                run["shards"],
                steps.batch_rows(run.storage),
            ),
            parameters=(
                "n_trips",
                "seed",
                "rush_hours",
                "storage",
                "start",
                "end",
                "period_seconds",
                "shards",
            ),
            runtime=("schedule_time", "shard"),
            outputs={"features": "Dataset", "batch": "Dataset"},
            returns=int,
            task="predict",
            fan_out=True,
            reads=("trips",),
        ),
        Step(
            "predict_batch",
            lambda run: inference_steps.predict_batch(
                run.names,
                run.path("features"),
                run.path("batch"),
                run["run_id"],
                steps.predictions_of(run.names, run.storage),
                run["shard"],
                run["shards"],
            ),
            parameters=("run_id", "storage", "shards"),
            runtime=("shard",),
            inputs={
                "features": "make_batch_features.features",
                "batch": "make_batch_features.batch",
            },
            task="predict",
            fan_out=True,
            reads=("model",),
            writes=("predictions",),
        ),
    ),
}


def find_step(name: str) -> Step:
    return _step_and_workflow(name)[0]


def workflow_of(step: Step) -> Workflow:
    return _step_and_workflow(step.name)[1]


def _step_and_workflow(name: str) -> tuple[Step, Workflow]:
    for workflow, table in WORKFLOW_STEPS.items():
        for step in table:
            if step.name == name:
                return step, workflow
    raise UserError(f"unknown step {name!r}")


def check_workflow(workflow: Workflow) -> tuple[Step, ...]:
    """The workflow's steps, once their declarations are known to fit together: known
    parameters and artifact types, inputs from earlier steps of the same command task (only
    files in one scratch folder pass between steps of a command)."""
    seen: dict[str, Step] = {}
    for step in WORKFLOW_STEPS[workflow]:
        unknown = [p for p in step.parameters if p not in PARAMETERS]
        unknown += [k for k in step.outputs.values() if k not in ARTIFACT_TYPES]
        unknown += [r for r in step.runtime if r not in RUNTIME]
        unknown += [k for k in step.reads if k not in READS]
        unknown += [k for k in step.writes if k not in WRITES]
        if unknown:
            raise ValueError(f"step {step.name}: unknown {', '.join(unknown)}")
        for source in step.inputs.values():
            producer, _, output = source.partition(".")
            if producer not in seen or (output and output not in seen[producer].outputs):
                raise ValueError(f"step {step.name} reads {source}, no earlier step's output")
            if seen[producer].task != step.task:
                raise ValueError(f"step {step.name} reads {producer} of another task")
        if seen and list(seen.values())[-1].fan_out and not step.fan_out:
            raise ValueError(f"step {step.name} follows a fan-out step: fan-out steps come last")
        seen[step.name] = step
    return WORKFLOW_STEPS[workflow]


def pipeline_parameters(workflow: Workflow) -> list[str]:
    """The parameters of a workflow's pipeline: COMMON, then each step's, in order."""
    found = list(COMMON)
    for step in WORKFLOW_STEPS[workflow]:
        found += [p for p in step.parameters if p not in found]
    return found


def parameters_of(spec: str) -> dict[str, Any]:
    """The parameter defaults compiled into a version's pipeline spec: the same values the
    kfp engines run with."""
    import yaml

    inputs = yaml.safe_load(spec)["root"]["inputDefinitions"]["parameters"]
    # Defaults travel through protobuf Struct, where every number is a float.
    return {
        name: int(entry["defaultValue"])
        if entry.get("parameterType") == "NUMBER_INTEGER"
        else entry.get("defaultValue")
        for name, entry in inputs.items()
    }


RESOURCE_KEYS = ("cpu", "memory")


def task_resources(spec: Any) -> dict[str, dict[str, str]]:
    """`pipelines.resources` of the config, checked: per command task of the step table,
    its `cpu` and `memory` as Kubernetes quantities (`"2"`, `"8Gi"`). A task or a key that
    does not exist is refused in one line (a typo would silently give no limit)."""
    found: dict[str, dict[str, str]] = {}
    for task, wanted in dict(spec or {}).items():
        if task not in task_names():
            raise UserError(
                f"pipelines.resources.{task}: no such task; use {', '.join(task_names())}"
            )
        unknown = [key for key in dict(wanted or {}) if key not in RESOURCE_KEYS]
        if unknown:
            raise UserError(f"pipelines.resources.{task}.{unknown[0]}: use cpu and memory")
        found[task] = {k: str(v) for k, v in dict(wanted or {}).items() if v is not None}
    return found


def describe_resources(resources: dict[str, dict[str, str]], workflow: Workflow) -> str:
    """`build-features: cpu 2, memory 4Gi; train: cpu 4, memory 8Gi`, for a plan."""
    return "; ".join(
        f"{task}: " + ", ".join(f"{key} {value}" for key, value in resources[task].items())
        for task in tasks(workflow)
        if resources.get(task)
    )


def tasks(workflow: Workflow) -> dict[str, list[Step]]:
    """The workflow's command tasks in order, each with its steps."""
    grouped: dict[str, list[Step]] = {}
    for step in check_workflow(workflow):
        grouped.setdefault(step.task, []).append(step)
    return grouped


def task_names() -> list[str]:
    return [task for workflow in WORKFLOW_STEPS for task in tasks(workflow)]
