"""The DAG file of one version's workflow: its tasks are the step table's command tasks
(`pipelines.step_table`), each running

    python -m {{ cookiecutter.package }}.pipelines.run_step TASK

with the version's own interpreter (`bash`) or in a pod of the version's image
(`kubernetes`). A bash task starts it through

    python -m {{ cookiecutter.package }}.engines.workers

so that the step runs in the version's warm worker on the Airflow machine (a fork of a
process that has the version's code and libraries imported), not in a new interpreter;
WARM_WORKER_IDLE_SECONDS=0 on that machine turns this off.

A version's DAG is immutable, so rendering is deterministic: the same version, code and
parameters give the same bytes, and a rerun finds its own file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from {{ cookiecutter.package }}.artifacts.names import ReleaseNames, Workflow
from {{ cookiecutter.package }}.engines import five_field_cron
from {{ cookiecutter.package }}.pipelines.run_step import encode
from {{ cookiecutter.package }}.pipelines.step_table import tasks

STEP_MODULE = "{{ cookiecutter.package }}.pipelines.run_step"
# A local (bash) task runs its step in the version's warm worker (`engines.workers`).
WARM_RUN_MODULE = "{{ cookiecutter.package }}.engines.workers"
# bash: the version's environment on the Airflow workers' machine (local, tests);
# kubernetes: a pod of the version's image (Cloud Composer, any cluster).
OPERATORS = ("bash", "kubernetes")
# How often a failed shard's task instance is tried again, alone (as kfp's SHARD_RETRIES).
SHARD_RETRIES = 2
# Jinja of Airflow's templates, built here so that no template engine renders it early.
_RUN_ID_TEMPLATE = "{" + "{ dag_run.conf.get('run_id', '') if dag_run.conf else '' }" + "}"
# A manual run's lineage settings (`inv run-inference -o lineage=...`), else the compiled ones.
_LINEAGE_TEMPLATE = "{" + "{ dag_run.conf.get('lineage', '') if dag_run.conf else '' }" + "}"
# An inference run's data interval: a manual run's conf (`inv run-inference --start/--end`),
# else the DAG run's data interval (Airflow 3 defines none for a manual run without a
# logical date: the step then takes the schedule's period up to now). Only for the tasks
# whose steps read it.
# The task instance's OpenLineage run, as the Airflow OpenLineage provider names it (its
# `lineage_parent_id` macro), when the provider is installed: the steps' lineage runs are its
# children, so the provider's view and the project's join.
_LINEAGE_PARENT_TEMPLATE = (
    "{"
    + "{ macros.OpenLineageProviderPlugin.lineage_parent_id(task_instance) "
    + "if macros.OpenLineageProviderPlugin is defined else '' }"
    + "}"
)
_INTERVAL_TEMPLATES = {
    bound.upper(): "{"
    + "{ "
    + f"(dag_run.conf.get('{bound}') if dag_run.conf else '') or "
    + f"(data_interval_{bound} if data_interval_{bound} is defined else '') or ''"
    + " }"
    + "}"
    for bound in ("start", "end")
}


def task_id(task: str) -> str:
    """Airflow's id of a step table task (`build-features` -> `build_features`)."""
    return task.replace("-", "_")


@dataclass(frozen=True)
class DagWriter:
    """Writes DAG files for one operator; `runner` is what runs a version's code there (the
    interpreter of its environment for `bash`; unused for `kubernetes`, which runs its image)."""

    operator: str
    # Per command task, its `cpu` and `memory` (`pipelines.resources`): a pod's resources.
    resources: dict[str, dict[str, str]] = field(default_factory=dict)

    def render(
        self,
        names: ReleaseNames,
        workflow: Workflow,
        parameters: dict[str, Any],
        schedule: Any,
        started: str,
        python: str,
    ) -> str:
        """The DAG file of one version's workflow, with the parameters compiled into its
        pipeline spec (`parameters_of`) and its schedule from `conf/config.yaml`."""
        if schedule.get("interval_seconds"):
            timing = f"timedelta(seconds={int(schedule.interval_seconds)})"
        else:
            timing = repr(five_field_cron(str(schedule.cron)))
        arguments = {k: v for k, v in parameters.items() if k != "run_id"}
        lines = [
            f'"""{names.airflow_dag_id(workflow)}: the {workflow} workflow of {names.project} '
            f"{names.version}.",
            "",
            "Written by `inv deploy-workflow`; never edit it: a version's DAG is immutable,",
            "a change is a new version. Each task runs that version's own code (its",
            'environment)."""',
            "",
            "from datetime import datetime, timedelta  # noqa: F401",
            "",
            *self._imports(),
            "from airflow.sdk import DAG",
            "",
            *self._runner(names, python),
            f"STEP_ARGUMENTS = {encode(arguments)!r}",
            "",
            "with DAG(",
            f"    dag_id={names.airflow_dag_id(workflow)!r},",
            f"    schedule={timing},",
            f"    start_date=datetime.fromisoformat({started!r}),",
            "    catchup=False,",
            "    max_active_runs=1,",
            f"    tags=[{names.project!r}, {workflow!r}, {'v' + names.version!r}],",
            "):",
        ]
        previous = ""
        for task, steps in tasks(workflow).items():  # the step table's tasks, in order
            interval = any("start" in step.parameters for step in steps)
            shards = int(parameters.get("shards", 1)) if steps[0].fan_out else 1
            lines += self._task(names, workflow, task_id(task), task, interval, shards)
            if previous:
                lines.append(f"    {previous} >> {task_id(task)}")
            previous = task_id(task)
        return "\n".join(lines) + "\n"

    def _imports(self) -> list[str]:
        if self.operator == "kubernetes":
            return [
                "from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator",
                "from kubernetes.client import models as k8s",
            ]
        return ["from airflow.providers.standard.operators.bash import BashOperator"]

    def _pod_resources(self, task: str) -> list[str]:
        """The pod's requests and limits, alike (as kfp's tasks get them)."""
        sized = self.resources.get(task)
        if not sized:
            return []
        quantities = {k: sized[k] for k in ("cpu", "memory") if k in sized}
        return [
            "        container_resources=k8s.V1ResourceRequirements(",
            f"            requests={quantities!r}, limits={quantities!r}",
            "        ),",
        ]

    def _runner(self, names: ReleaseNames, python: str) -> list[str]:
        """What runs the version's code: its environment's interpreter, or its image."""
        if self.operator == "kubernetes":
            return [f"IMAGE = {names.image!r}"]
        return [f"PYTHON = {python!r}"]

    def _task(
        self,
        names: ReleaseNames,
        workflow: Workflow,
        task_id: str,
        step: str,
        interval: bool,
        shards: int,
    ) -> list[str]:
        """One command task; with `shards`, a mapped task (`.partial(...).expand(...)`): an
        instance per shard, SHARD in its environment, each retried alone."""
        templates = _INTERVAL_TEMPLATES.items() if interval else ()
        interval_env = "".join(f", {name}={template!r}" for name, template in templates)
        env = (
            f"dict(STEP_ARGUMENTS=STEP_ARGUMENTS, RUN_ID={_RUN_ID_TEMPLATE!r}{interval_env}, "
            f"LINEAGE={_LINEAGE_TEMPLATE!r}, OPENLINEAGE_PARENT_ID={_LINEAGE_PARENT_TEMPLATE!r}"
        )
        if self.operator == "kubernetes":
            pod = f"{names.airflow_dag_id(workflow)}-{task_id}".replace("_", "-").lower()
            operator, env_name = "KubernetesPodOperator", "env_vars"
            settings = [
                f"        name={pod[:63]!r},",
                "        image=IMAGE,",
                f"        cmds=['python3', '-m', {STEP_MODULE!r}, {step!r}],",
                *self._pod_resources(step),
                "        do_xcom_push=True,  # run_step writes /airflow/xcom/return.json",
            ]
        else:
            command = f" -m {WARM_RUN_MODULE} {STEP_MODULE} {step}"
            operator, env_name = "BashOperator", "env"
            settings = [f"        bash_command=PYTHON + {command!r},", "        append_env=True,"]
        if shards <= 1:
            return [
                f"    {task_id} = {operator}(",
                f"        task_id={task_id!r},",
                *settings,
                f"        {env_name}={env}),",
                "    )",
            ]
        mapped = ", ".join(f"{env}, SHARD={str(shard)!r})" for shard in range(shards))
        return [
            f"    {task_id} = {operator}.partial(",
            f"        task_id={task_id!r},",
            *settings,
            f"        retries={SHARD_RETRIES},  # a failed shard is tried again, alone",
            "        retry_delay=timedelta(seconds=30),",
            f"    ).expand({env_name}=[{mapped}])",
        ]
