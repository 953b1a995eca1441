"""Running the step table's steps: in a kfp component (`run_component`, each step its own
task) or as a command task (`run_task`, Airflow: a task's steps in order, their artifacts as
files in one scratch folder). Either way a step is called with a `StepRun`, between its
lineage events when lineage is on (`call_step`).
"""

from __future__ import annotations

import json
import tempfile
from functools import cached_property
from pathlib import Path
from typing import Any

from {{ cookiecutter.package }}.artifacts.data_sources import DataSource
from {{ cookiecutter.package }}.artifacts.feature_store import FeatureStore
from {{ cookiecutter.package }}.artifacts.names import ReleaseNames
from {{ cookiecutter.package }}.errors import UserError
from {{ cookiecutter.package }}.pipelines import steps
from {{ cookiecutter.package }}.pipelines.step_table import (
    COMMON,
    RUNTIME,
    WORKFLOW_STEPS,
    Step,
    find_step,
    task_names,
    tasks,
    workflow_of,
)


class StepRun:
    """What a step's function is called with: its release, parameters and artifact paths,
    and the stores the `storage` parameter names (opened on first use)."""

    def __init__(
        self, parameters: dict[str, Any], paths: dict[str, str], values: dict[str, Any]
    ) -> None:
        self.parameters, self.paths, self.values = parameters, paths, values
        self.names: ReleaseNames = ReleaseNames.from_json(parameters["release"])

    def __getitem__(self, name: str) -> Any:
        """A pipeline parameter, or the returned value of an earlier step."""
        return self.values[name] if name in self.values else self.parameters[name]

    def json(self, name: str) -> Any:
        return json.loads(self[name])

    def path(self, name: str) -> str:
        return self.paths[name]

    @cached_property
    def storage(self) -> str:
        return str(self.parameters.get("storage", "{}"))

    @cached_property
    def feature_store(self) -> FeatureStore:
        return steps.feature_store_of(self.names, self.storage)

    @cached_property
    def data_source(self) -> DataSource:
        return steps.data_source_of(
            self.names, self.storage, self.parameters["n_trips"], self.parameters["seed"]
        )

    @property
    def invalid_share(self) -> float:
        return steps.max_invalid_share(self.storage)


def run_component(name: str, arguments: dict[str, Any]) -> Any:
    """Run one step inside a kfp component: `arguments` are the component's own (parameters,
    kfp artifacts, earlier steps' returned values); Metrics outputs get the returned dict."""
    step = find_step(name)
    wanted = (*COMMON, *step.parameters, *step.runtime)
    parameters = {p: arguments[p] for p in wanted if p in arguments}
    paths = {a: arguments[a].path for a in [*step.outputs, *artifact_inputs(step)]}
    values = {a: arguments[a] for a in step.inputs if a not in paths}
    result = call_step(step, StepRun(parameters, paths, values))
    for output, kind in step.outputs.items():
        if kind == "Metrics":
            for metric, value in dict(result).items():
                arguments[output].log_metric(metric, value)
    return result


def run_task(task: str, parameters: dict[str, Any]) -> Any:
    """Run one command task (Airflow): its steps in order, their artifacts as files in one
    scratch folder, the last step's returned value as the task's result."""
    found = [steps_ for wf in WORKFLOW_STEPS for t, steps_ in tasks(wf).items() if t == task]
    if not found:
        raise UserError(f"unknown step {task!r}: use one of {', '.join(task_names())}")
    returned: dict[str, Any] = {}
    result: Any = None
    with tempfile.TemporaryDirectory() as scratch:
        for step in found[0]:
            paths = {
                artifact: str(Path(scratch) / f"{step.name}.{artifact}")
                for artifact in step.outputs
            }
            for argument, source in artifact_inputs(step).items():
                producer, _, output = source.partition(".")
                paths[argument] = str(Path(scratch) / f"{producer}.{output}")
            values = {a: returned[s] for a, s in step.inputs.items() if "." not in s}
            wanted = {p: parameters[p] for p in (*COMMON, *step.parameters) if p in parameters}
            wanted.update({r: parameters.get(r, RUNTIME[r]()) for r in step.runtime})
            result = returned[step.name] = call_step(step, StepRun(wanted, paths, values))
    return result


def call_step(step: Step, run: StepRun) -> Any:
    """Call the step's function; with lineage on, between its run's START and its COMPLETE
    or FAIL event (`pipelines.step_lineage`, which imports the OpenLineage client)."""
    from {{ cookiecutter.package }}.pipelines.openlineage_runs import Lineage

    if not Lineage.from_json(run.parameters.get("lineage")).enabled:
        return step.call(run)
    from {{ cookiecutter.package }}.pipelines.step_lineage import traced

    return traced(step, workflow_of(step), run, lambda: step.call(run))


def artifact_inputs(step: Step) -> dict[str, str]:
    return {argument: source for argument, source in step.inputs.items() if "." in source}
