"""The step table is the one declaration of the workflows: every engine's view derives from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import composed
from omegaconf import DictConfig

from {{ cookiecutter.package }}.artifacts.names import WORKFLOWS, names_for
from {{ cookiecutter.package }}.engines.airflow import AirflowEngine, parameters_of
from {{ cookiecutter.package }}.errors import UserError
from {{ cookiecutter.package }}.pipelines import run_step, step_context, step_runs, step_table
from {{ cookiecutter.package }}.pipelines.kfp_pipelines import component_source
from {{ cookiecutter.package }}.pipelines.step_table import (
    WORKFLOW_STEPS,
    Step,
    describe_resources,
    pipeline_parameters,
)
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.release.workflows import (
    compile_spec,
    resources_of,
    workflow_parameters,
)

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def airflow_cfg(tmp_path: Path) -> DictConfig:
    return composed(
        "airflow",
        per_test={
            "env.artifact_root": str(tmp_path / "artifacts"),
            "env.airflow.dags_folder": str(tmp_path),
        },
    )


def _announce(run: step_context.StepRun) -> str:
    """The added step, in a task of its own: reads the release and a parameter."""
    return f"{run.names.version} ran with seed {run['seed']}"


# After the fan-out steps of inference: a fan-out step too (one task per shard).
ADDED = Step("announce", _announce, parameters=("seed",), task="announce", fan_out=True)


def test_a_step_added_to_the_table_is_in_kfp_airflow_and_run_step(
    airflow_cfg: DictConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(WORKFLOW_STEPS, "inference", (*WORKFLOW_STEPS["inference"], ADDED))
    ctx = ReleaseContext.create(airflow_cfg)

    spec = yaml.safe_load(compile_spec(ctx, "inference", SHA))
    tasks = spec["root"]["dag"]["tasks"]
    assert sorted(tasks) == ["announce", "make-batch-features", "predict-batch"]
    assert tasks["announce"]["dependentTasks"] == ["predict-batch"]  # after the step before it
    assert "comp-announce" in spec["components"]
    executors = json.dumps(spec["deploymentSpec"]["executors"])
    assert "def announce(" in executors and "run_component('announce', locals())" in executors

    engine = AirflowEngine.from_config(airflow_cfg, ctx.store, ctx.project_root, ctx.environments)
    dag = engine.render(ctx.names, "inference", parameters_of(compile_spec(ctx, "inference", SHA)))
    assert "    predict >> announce\n" in dag
    assert "run_step announce'" in dag

    # run_step knows the task (in-process: the table is patched in this interpreter only).
    assert "announce" in step_table.task_names()
    arguments = workflow_parameters(ctx, "inference", SHA) | {"seed": 3}
    assert run_step.run("announce", arguments) == f"{ctx.names.version} ran with seed 3"


def test_every_pipeline_parameter_is_given_by_the_release(airflow_cfg: DictConfig) -> None:
    ctx = ReleaseContext.create(airflow_cfg)
    for workflow in WORKFLOWS:
        assert sorted(workflow_parameters(ctx, workflow, SHA)) == sorted(
            pipeline_parameters(workflow)
        )


def test_a_component_is_typed_from_its_table_entry() -> None:
    source = component_source(step_table.find_step("publish_model"))
    assert "    model: Input[Model],\n    metrics: dict,\n" in source
    assert source.startswith(
        "def publish_model(\n    release: str,\n    lineage: str,\n    git_sha: str,"
    )
    assert "return run_component('publish_model', locals())" in source


def test_an_unknown_task_names_the_known_ones() -> None:
    with pytest.raises(UserError, match="use one of build-features, train, predict$"):
        step_runs.run_task("explode", {})


def test_a_table_passing_a_value_between_command_tasks_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    across = Step(
        "announce", _announce, ("seed",), task="announce", inputs={"rows": "make_batch_features"}
    )
    monkeypatch.setitem(WORKFLOW_STEPS, "inference", (*WORKFLOW_STEPS["inference"], across))
    with pytest.raises(ValueError, match="announce reads make_batch_features of another task"):
        step_table.check_workflow("inference")


def test_each_task_gets_its_cpu_and_memory_and_a_typo_is_refused(cfg, tmp_path: Path) -> None:
    ctx = ReleaseContext(cfg=cfg, names=names_for(cfg), project_root=tmp_path)
    spec = yaml.safe_load(compile_spec(ctx, "training", SHA))
    executors = spec["deploymentSpec"]["executors"]
    sized = {
        name: executors[name]["container"]["resources"]
        for name in ("exec-build-features", "exec-train-model", "exec-publish-model")
    }
    # conf/config.yaml: build-features 1 CPU and 2Gi, train (fit and publish) 2 CPU and 4Gi.
    assert sized["exec-build-features"]["resourceCpuLimit"] == "1"
    assert sized["exec-build-features"]["resourceMemoryRequest"] == "2Gi"
    for step in ("exec-train-model", "exec-publish-model"):
        assert sized[step]["resourceCpuRequest"] == sized[step]["resourceCpuLimit"] == "2"
        assert sized[step]["resourceMemoryLimit"] == "4Gi"
    assert describe_resources(resources_of(ctx), "training") == (
        "build-features: cpu 1, memory 2Gi; train: cpu 2, memory 4Gi"
    )
    with pytest.raises(UserError, match=r"^pipelines.resources.trian: no such task; use "):
        step_table.task_resources({"trian": {"cpu": 2}})
    with pytest.raises(UserError, match=r"^pipelines.resources.train.gpu: use cpu and memory$"):
        step_table.task_resources({"train": {"gpu": 1}})
