"""The kfp components and pipelines of the step table, and their compilation for a version.

A version's pipelines are compiled once, with that version's image and parameter defaults;
the same YAML is run by kfp's local execution (env local) and uploaded to Kubeflow
Pipelines (dev, prod).

kfp runs a lightweight component by copying its function's *source* into the task's
container and reading the copy's annotations, so each step's component function is written
out as source from its table entry (`component_source`) and registered with `linecache` for
`inspect.getsource`, as attrs and dataclasses do for the methods they generate. Its body
imports this package and calls `step_runs.run_component`.
"""

from __future__ import annotations

import contextlib
import inspect
import linecache
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kfp import compiler, dsl

from {{ cookiecutter.package }}.artifacts.names import ReleaseNames, Workflow
from {{ cookiecutter.package }}.pipelines.step_table import (
    COMMON,
    PARAMETERS,
    RETURNED,
    RUNTIME,
    Step,
    check_workflow,
    find_step,
    pipeline_parameters,
)

# What kfp fills in for each of the step table's RUNTIME values: a recurring run's
# scheduled time (kfp's local runner leaves it as written; the step then uses the clock).
RUNTIME_VALUES: dict[str, Any] = {"schedule_time": dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER}
# How often a failed shard's task is tried again, alone (the other shards keep their result).
SHARD_RETRIES = 2


def component_source(step: Step) -> str:
    """The component function of `step`: its parameters, inputs and outputs, typed for kfp."""
    arguments = [f"{name}: {PARAMETERS[name].__name__}" for name in (*COMMON, *step.parameters)]
    arguments += [f"{name}: {RUNTIME[name].__name__}" for name in step.runtime]
    for argument, source in step.inputs.items():
        producer, _, output = source.partition(".")
        if output:
            arguments.append(f"{argument}: Input[{find_step(producer).outputs[output]}]")
        else:
            arguments.append(f"{argument}: {find_step(producer).returns.__name__}")
    arguments += [f"{artifact}: Output[{kind}]" for artifact, kind in step.outputs.items()]
    signature = ",\n    ".join(arguments)
    return (
        f"def {step.name}(\n    {signature},\n) -> {step.returns.__name__}:\n"
        "    from {{ cookiecutter.package }}.pipelines.step_runs import run_component\n\n"
        f"    return run_component({step.name!r}, locals())\n"
    )


def component_function(step: Step) -> Callable[..., Any]:
    source = component_source(step)
    filename = f"<{{ cookiecutter.package }} step {step.name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = dict(vars(dsl))
    # dont_inherit: kfp reads the annotations as types, not as this module's postponed strings
    exec(compile(source, filename, "exec", dont_inherit=True), namespace)
    return namespace[step.name]  # type: ignore[no-any-return]


def pipeline_of(
    workflow: Workflow,
    names: ReleaseNames,
    image: str,
    resources: dict[str, dict[str, str]] | None = None,
    shards: int = 1,
) -> Any:
    """The kfp pipeline of `workflow`: its steps in table order, every step in `image`,
    each with its task's CPU and memory (`pipelines.resources`: request and limit alike, so
    a task gets what it was sized for and no more). With `shards`, the fan-out steps run
    once per shard in a `dsl.ParallelFor`, each retried alone when it fails, and the
    pipeline's result is every shard's."""
    resources = resources or {}
    table = check_workflow(workflow)
    components = {
        step.name: dsl.component(
            component_function(step), base_image=image, install_kfp_package=False
        )
        for step in table
    }
    parameters = pipeline_parameters(workflow)
    fans_out = shards > 1 and any(step.fan_out for step in table)

    def body(*values: Any) -> Any:
        given = dict(zip(parameters, values, strict=True))
        tasks: dict[str, Any] = {}
        previous: Step | None = None
        runtime: dict[str, Any] = {**RUNTIME_VALUES, "shard": 0}
        with contextlib.ExitStack() as fan_out:
            for step in table:
                if step.fan_out and fans_out and not (previous and previous.fan_out):
                    runtime["shard"] = fan_out.enter_context(dsl.ParallelFor(list(range(shards))))
                arguments = {name: given[name] for name in (*COMMON, *step.parameters)}
                arguments.update({name: runtime[name] for name in step.runtime})
                for argument, source in step.inputs.items():
                    producer, _, output = source.partition(".")
                    arguments[argument] = tasks[producer].outputs[output or RETURNED]
                task = components[step.name](**arguments)
                sized = resources.get(step.task, {})
                if "cpu" in sized:
                    task.set_cpu_request(sized["cpu"]).set_cpu_limit(sized["cpu"])
                if "memory" in sized:
                    task.set_memory_request(sized["memory"]).set_memory_limit(sized["memory"])
                if step.fan_out and fans_out:
                    task.set_retry(num_retries=SHARD_RETRIES, backoff_duration="30s")
                consumed = {source.partition(".")[0] for source in step.inputs.values()}
                if previous is not None and previous.name not in consumed:
                    task.after(tasks[previous.name])  # steps run in table order
                tasks[step.name] = task
                previous = step
        last = tasks[table[-1].name].outputs[RETURNED]
        return dsl.Collected(last) if fans_out else last

    body.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=PARAMETERS[name]
            )
            for name in parameters
        ],
        return_annotation=list if fans_out else str,
    )
    body.__name__ = workflow
    return dsl.pipeline(
        body,
        name=names.pipeline_name(workflow),
        description=f"The {workflow} workflow of {names.project} {names.version}",
    )


def compile_workflow(
    workflow: Workflow,
    names: ReleaseNames,
    image: str,
    parameters: dict[str, Any],
    resources: dict[str, dict[str, str]] | None = None,
) -> str:
    """The pipeline spec YAML of `workflow` for this version, parameters as defaults."""
    shards = int(parameters.get("shards", 1))
    pipeline = pipeline_of(workflow, names, image, resources, shards)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / f"{workflow}.yaml"
        compiler.Compiler().compile(pipeline, str(path), pipeline_parameters=parameters)
        return path.read_text()
