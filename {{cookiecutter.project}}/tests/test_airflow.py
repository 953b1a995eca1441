"""The Airflow engine's own logic: DAG ids, DAG files, parameters, the step command.

Against a real Airflow (two versions scheduled side by side, retire, rollback, a failing
task, a release killed between DAG upload and schedule), the template's slow tier runs this
project with `airflow standalone`; Airflow is too large a dependency for this project's own
environment.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import composed
from omegaconf import DictConfig

from {{ cookiecutter.package }}.artifacts.names import ReleaseNames
from {{ cookiecutter.package }}.config import load_config
from {{ cookiecutter.package }}.engines import five_field_cron
from {{ cookiecutter.package }}.engines.airflow import (
    AirflowClient,
    AirflowEngine,
    parameters_of,
)
from {{ cookiecutter.package }}.errors import ReleaseError
from {{ cookiecutter.package }}.pipelines.run_step import decode, encode
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.release.workflows import compile_spec


@pytest.fixture
def airflow_cfg(tmp_path: Path) -> DictConfig:
    return composed(
        "airflow",
        ["schedules.inference.interval_seconds=30"],
        {
            "env.artifact_root": str(tmp_path / "artifacts"),
            "env.airflow.dags_folder": str(tmp_path / "dags"),
        },
    )


def test_dag_ids_carry_the_version() -> None:
    cfg = load_config("airflow")
    names = ReleaseContext.create(cfg, "1.2.0").names
    project = "{{ cookiecutter.project | replace('-', '_') }}"
    assert names.airflow_dag_id("training") == f"{project}_training__v1_2_0"
    assert names.airflow_dag_id("inference") == f"{project}_inference__v1_2_0"


def test_kfp_crons_lose_their_seconds_field() -> None:
    assert five_field_cron("0 0 3 */3 * *") == "0 3 */3 * *"
    assert five_field_cron("*/5 * * * *") == "*/5 * * * *"


def test_a_versions_dag_file_is_valid_deterministic_and_runs_its_own_code(
    airflow_cfg: DictConfig,
) -> None:
    ctx = ReleaseContext.create(airflow_cfg)
    engine = AirflowEngine.from_config(airflow_cfg, ctx.store, ctx.project_root, ctx.environments)
    spec = compile_spec(ctx, "inference", "abc123")
    parameters = parameters_of(spec)
    assert isinstance(parameters["n_trips"], int)  # not the float protobuf made of it
    source = engine.render(ctx.names, "inference", parameters)
    assert source == engine.render(ctx.names, "inference", parameters)
    tree = ast.parse(source)  # a Python file Airflow can import
    assert "schedule=timedelta(seconds=30)" in source
    assert f"PYTHON = {sys.executable!r}" in source  # no published code yet: the checkout's
    # Each task's step runs in the version's warm worker (`engines.workers`).
    package = "{{ cookiecutter.package }}"
    steps = f" -m {package}.engines.workers {package}.pipelines.run_step"
    assert f"bash_command=PYTHON + '{steps} predict'" in source
    encoded = next(
        node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "STEP_ARGUMENTS"
    )
    assert ReleaseNames.from_json(decode(encoded)["release"]) == ctx.names
    assert "dag_run.conf.get('run_id'" in source  # Airflow renders it per run, not us
    # The inference task gets the run's data interval (the e2e test runs it in Airflow);
    # the training tasks, which read none, get nothing of it.
    assert "START=" in source and "data_interval_end if data_interval_end is defined" in source
    training = compile_spec(ctx, "training", "abc123")
    assert "START=" not in engine.render(ctx.names, "training", parameters_of(training))


def test_step_arguments_survive_any_quoting() -> None:
    braces = "{" + "{ template }" + "}"
    arguments = {"config": json.dumps({"a": f'it\'s "quoted" {braces} $HOME `ls`'})}
    text = encode(arguments)
    assert set(text) <= set(base64.b64encode(bytes(range(256))).decode() + "=")
    assert decode(text) == arguments


def test_the_step_command_fails_in_one_line(tmp_path: Path) -> None:
    arguments = {
        "project": "taxi",
        "version": "1.0.0",
        "feature_version": "1.0.0",
        "artifact_root": str(tmp_path),
    }
    # As a DAG's task runs it; the checkout's interpreter hosts no worker, so it runs itself.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "{{ cookiecutter.package }}.engines.workers",
            "{{ cookiecutter.package }}.pipelines.run_step",
            "explode",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "STEP_ARGUMENTS": encode(arguments)},
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: UserError: unknown step 'explode': use one of build-features, train, predict"
    )


def test_on_a_cluster_each_task_is_a_pod_of_the_versions_image(tmp_path: Path) -> None:
    cfg = load_config(
        "airflow",
        [
            f"env.artifact_root={tmp_path / 'artifacts'}",
            f"env.airflow.dags_folder={tmp_path / 'dags'}",
            "env.airflow.operator=kubernetes",
            "env.registry=europe-west1-docker.pkg.dev/p/r",
        ],
    )
    ctx = ReleaseContext.create(cfg)
    engine = AirflowEngine.from_config(cfg, ctx.store, ctx.project_root, ctx.environments)
    source = engine.render(ctx.names, "training", parameters_of(compile_spec(ctx, "training", "a")))
    ast.parse(source)
    assert f"IMAGE = {ctx.names.image!r}" in source
    assert source.count("KubernetesPodOperator(") == 2  # build_features, train
    # Each pod is sized by pipelines.resources, its task's request and limit alike.
    train_pod = source.split("train = KubernetesPodOperator(")[1]
    assert (
        "container_resources=k8s.V1ResourceRequirements(\n"
        "            requests={'cpu': '2', 'memory': '4Gi'}, limits={'cpu': '2', 'memory': '4Gi'}"
    ) in train_pod
    assert "PYTHON" not in source and "do_xcom_push=True" in source


def test_an_unknown_operator_is_one_error(tmp_path: Path) -> None:
    cfg = load_config(
        "airflow", [f"env.airflow.dags_folder={tmp_path}", "env.airflow.operator=docker"]
    )
    ctx = ReleaseContext.create(cfg)
    with pytest.raises(ReleaseError, match="env.airflow.operator must be one of bash, kubernetes"):
        AirflowEngine.from_config(cfg, ctx.store, ctx.project_root, ctx.environments)


def test_composer_auth_without_google_credentials_is_one_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    client = AirflowClient("http://127.0.0.1:9", google=True)
    with pytest.raises(ReleaseError, match="^no Google Cloud credentials for Cloud Composer"):
        client.token()
