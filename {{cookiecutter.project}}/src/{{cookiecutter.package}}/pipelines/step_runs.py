"""Running the step table's steps: in a kfp component (`run_component`, each step its own
task) or as a command task (`run_task`, Airflow: a task's steps in order, their artifacts as
files in one scratch folder). Either way a step is called with a `StepRun`, between its
lineage events when lineage is on (`call_step`). What a step is called with is
`pipelines.step_context`; the table imports neither.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from {{ cookiecutter.package }}.errors import UserError
from {{ cookiecutter.package }}.pipelines.step_context import StepRun
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


def run_component(name: str, arguments: dict[str, Any]) -> Any:
    """Run one step inside a kfp component: `arguments` are the component's own (parameters,
    kfp artifacts, earlier steps' returned values); Metrics outputs get the returned dict."""
    step = find_step(name)
    wanted = (*COMMON, *step.parameters, *step.runtime)
    parameters = {p: arguments[p] for p in wanted if p in arguments}
    paths = {a: arguments[a].path for a in [*step.outputs, *step.artifact_inputs]}
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
            for argument, source in step.artifact_inputs.items():
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
