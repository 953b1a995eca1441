"""The Airflow engine: registers, schedules and runs a version's DAGs through Airflow's
REST API (see the package's docstring)."""

from __future__ import annotations

import json
import os
import re
import time
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from {{ cookiecutter.package }}.artifacts.code import read_code
from {{ cookiecutter.package }}.artifacts.names import WORKFLOWS, ReleaseNames, Workflow
from {{ cookiecutter.package }}.artifacts.store import AlreadyExistsError, ArtifactStore, open_store
from {{ cookiecutter.package }}.engines import Schedule
from {{ cookiecutter.package }}.engines.airflow.client import AirflowClient
from {{ cookiecutter.package }}.engines.airflow.dags import (
    OPERATORS,
    DagWriter,
    task_id,
)
from {{ cookiecutter.package }}.engines.version_env import VersionEnvironments
from {{ cookiecutter.package }}.errors import ReleaseError
from {{ cookiecutter.package }}.pipelines.step_table import parameters_of, task_resources, tasks

_EXCEPTION = re.compile(r"error: (\w+): (.+)$|^(\w*(?:Error|Exception)): (.+)$")


class AirflowEngine:
    def __init__(
        self,
        client: AirflowClient,
        dags: ArtifactStore,
        writer: DagWriter,
        schedules: Any,
        store: ArtifactStore,
        environments: VersionEnvironments,
        parse_timeout_s: float = 120,
        poll_s: float = 1,
    ) -> None:
        self.client, self.dags, self.writer, self.schedules_cfg = client, dags, writer, schedules
        self.store, self.environments = store, environments
        self.parse_timeout_s, self.poll_s = parse_timeout_s, poll_s

    @classmethod
    def from_config(
        cls,
        cfg: Any,
        store: ArtifactStore,
        project_root: Path,
        environments: VersionEnvironments,
    ) -> AirflowEngine:
        """`env.airflow` of the config; credentials from the environment, never the config."""
        settings = cfg.env.airflow
        operator = str(settings.get("operator", "bash"))
        if operator not in OPERATORS:
            raise ReleaseError(
                f"env.airflow.operator must be one of {', '.join(OPERATORS)}, not {operator!r}"
            )
        client = AirflowClient(
            str(settings.host or ""),
            token=os.environ.get("AIRFLOW_TOKEN", ""),
            username=os.environ.get("AIRFLOW_USERNAME", ""),
            password=os.environ.get("AIRFLOW_PASSWORD", ""),
            google=str(settings.get("auth", "password")) == "google",
        )
        return cls(
            client,
            open_store(str(settings.dags_folder)),
            DagWriter(operator, task_resources(cfg.get("pipelines", {}).get("resources"))),
            cfg.schedules,
            store,
            environments,
            float(settings.parse_timeout_seconds),
            float(settings.poll_seconds),
        )

    # -- the Engine protocol ----------------------------------------------------------------
    def check(self) -> None:
        health = self.client.get("/api/v2/monitor/health")
        down = [
            part
            for part, state in health.items()
            if isinstance(state, dict) and state.get("status") != "healthy"
        ]
        if down:
            raise ReleaseError(f"Airflow at {self.client.host} is not healthy: {', '.join(down)}")

    def prepare(self, names: ReleaseNames) -> str:
        bash = self.writer.operator == "bash"
        runner = repr(self.environments.python_for(names) if bash else names.image)
        return f"runs in Airflow at {self.client.host} with {runner}"

    def register(self, names: ReleaseNames, workflow: Workflow, spec: str) -> str:
        dag_id = names.airflow_dag_id(workflow)
        source = self.render(names, workflow, parameters_of(spec))
        key = f"{dag_id}.py"
        written_at: datetime | None = datetime.now(UTC)
        try:
            self.dags.write_text(key, source)
        except AlreadyExistsError:
            written_at = None  # there before: any parse of it will do
            if self.dags.read_text(key) != source:
                raise ReleaseError(
                    f"{self.dags.root}/{key} exists with another DAG for version "
                    f"{names.version}: released workflows are immutable, bump the version"
                ) from None
        self._wait_until_parsed(dag_id, written_at)
        return dag_id

    def address(self, names: ReleaseNames, workflow: Workflow) -> str:
        return self.dags.uri(f"{names.airflow_dag_id(workflow)}.py")

    def registered(self, names: ReleaseNames, workflow: Workflow) -> bool:
        return self._dag(names.airflow_dag_id(workflow)) is not None

    def schedules(self, names: ReleaseNames) -> list[Schedule]:
        """The version's schedules once `create_schedules` committed them; each enabled
        while its DAG is unpaused. A DAG that was only registered (or run ad hoc) has none."""
        if not self.store.exists(names.schedules_key):
            return []
        found = []
        for workflow in WORKFLOWS:
            dag = self._dag(names.airflow_dag_id(workflow))
            if dag is not None:
                found.append(
                    Schedule(workflow=workflow, name=dag["dag_id"], enabled=not dag["is_paused"])
                )
        return found

    def create_schedules(self, names: ReleaseNames, schedules: list[Schedule]) -> None:
        for schedule in schedules:
            self._set_paused(names.airflow_dag_id(schedule.workflow), not schedule.enabled)
        # The commit point: written after the DAGs are unpaused, so a release killed before
        # it unpauses them again when it is run again.
        record = {"version": names.version, "dags": [names.airflow_dag_id(w) for w in WORKFLOWS]}
        with suppress(AlreadyExistsError):  # a rerun: committed before
            self.store.write_text(names.schedules_key, json.dumps(record, indent=2))

    def set_enabled(self, names: ReleaseNames, enabled: bool) -> None:
        dags = [d for d in (names.airflow_dag_id(w) for w in WORKFLOWS) if self._dag(d)]
        if not dags:
            raise ReleaseError(f"version {names.version} has no DAGs in Airflow")
        for dag_id in dags:
            self._set_paused(dag_id, not enabled)

    def details(self, names: ReleaseNames) -> str:
        return ""

    def holdings(self, names: ReleaseNames) -> list[str]:
        """The version's DAG files, then its DAGs in Airflow: a file removed first cannot
        bring its DAG back at the next parse."""
        files = [f"{dag_id}.py" for dag_id in map(names.airflow_dag_id, WORKFLOWS)]
        found = [self.dags.uri(key) for key in files if self.dags.exists(key)]
        dag_ids = [names.airflow_dag_id(w) for w in WORKFLOWS]
        return found + [self._dag_address(d) for d in dag_ids if self._dag(d) is not None]

    def forget(self, names: ReleaseNames, address: str) -> None:
        for dag_id in map(names.airflow_dag_id, WORKFLOWS):
            if address == self.dags.uri(f"{dag_id}.py"):
                self.dags.delete(f"{dag_id}.py")
                return
            if address == self._dag_address(dag_id):
                with suppress(LookupError):  # deleted before
                    self.client.delete(f"/api/v2/dags/{dag_id}")
                return
        raise ReleaseError(f"{address} is not one of version {names.version}'s DAGs")

    def _dag_address(self, dag_id: str) -> str:
        return f"{self.client.host}/dags/{dag_id}"

    def run(
        self,
        names: ReleaseNames,
        workflow: Workflow,
        spec: str,
        arguments: dict[str, Any],
        timeout_s: int,
    ) -> str:
        """Trigger one run of the version's DAG and wait for it.

        Airflow starts no run of a paused DAG, manual ones included: a paused DAG is
        unpaused for the run and paused again after it, whatever its outcome.
        """
        dag_id = self.register(names, workflow, spec)
        dag = self._dag(dag_id)
        if dag is None:
            raise ReleaseError(f"Airflow has no DAG {dag_id}")
        was_paused = bool(dag["is_paused"])
        run_id = f"manual__{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
        # The run id, the data interval and the lineage settings of a manual run: the DAG's
        # tasks read them from the run's conf (its data interval is Airflow's only for
        # scheduled runs; its lineage, without one, the version's compiled settings).
        given = ("run_id", "start", "end", "lineage")
        conf = {k: str(arguments[k]) for k in given if arguments.get(k)}
        self.client.post(
            f"/api/v2/dags/{dag_id}/dagRuns",
            {"dag_run_id": run_id, "logical_date": None, "conf": conf},
        )
        try:
            if was_paused:
                self._set_paused(dag_id, False)
            state = self._wait_for_run(dag_id, run_id, timeout_s)
        finally:
            if was_paused:
                self._set_paused(dag_id, True)
        last_task = task_id(list(tasks(workflow))[-1])
        if state != "success":
            raise ReleaseError(
                f"{workflow} of {names.version} failed{self._failure(dag_id, run_id)}"
            )
        xcom = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{last_task}/xcomEntries"
        last_steps = list(tasks(workflow).values())[-1]
        shards = int(parameters_of(spec).get("shards", 1)) if last_steps[0].fan_out else 1
        if shards <= 1:
            return str(self.client.get(f"{xcom}/return_value")["value"])
        # A mapped task: each shard's result, a line each (as the local engine gives them).
        return "\n".join(
            str(self.client.get(f"{xcom}/return_value?map_index={shard}")["value"])
            for shard in range(shards)
        )

    def render(self, names: ReleaseNames, workflow: Workflow, parameters: dict[str, Any]) -> str:
        """The DAG file of one version's workflow (`DagWriter.render`), started at the time
        the version's code was published."""
        record = read_code(self.store, names)
        started = record.created_at if record else "2024-01-01T00:00:00+00:00"
        bash = self.writer.operator == "bash"
        python = self.environments.python_for(names) if bash else ""
        schedule = self.schedules_cfg[workflow]
        return self.writer.render(names, workflow, parameters, schedule, started, python)

    # -- Airflow state ------------------------------------------------------------------------
    def _dag(self, dag_id: str) -> dict[str, Any] | None:
        try:
            return dict(self.client.get(f"/api/v2/dags/{dag_id}"))
        except LookupError:
            return None

    def _set_paused(self, dag_id: str, paused: bool) -> None:
        self.client.patch(f"/api/v2/dags/{dag_id}", {"is_paused": paused})

    def _parsed(self, dag_id: str, since: datetime | None) -> bool:
        """Airflow holds the DAG from this file: present, not stale, parsed after `since`."""
        dag = self._dag(dag_id)
        if dag is None or dag.get("is_stale"):
            return False
        parsed = dag.get("last_parsed_time")
        return since is None or (parsed is not None and datetime.fromisoformat(parsed) > since)

    def _wait_until_parsed(self, dag_id: str, since: datetime | None) -> None:
        deadline = time.monotonic() + self.parse_timeout_s
        while not self._parsed(dag_id, since):
            if time.monotonic() > deadline:
                errors = self.client.get("/api/v2/importErrors").get("import_errors", [])
                mine = [
                    e["stack_trace"].strip().splitlines()[-1]
                    for e in errors
                    if dag_id in str(e.get("filename", ""))
                ]
                why = f": {mine[0]}" if mine else ""
                raise ReleaseError(
                    f"Airflow did not load DAG {dag_id} within {self.parse_timeout_s:.0f} s{why}"
                )
            time.sleep(self.poll_s)

    def _wait_for_run(self, dag_id: str, run_id: str, timeout_s: int) -> str:
        deadline = time.monotonic() + timeout_s
        seen: dict[str, str] = {}
        while True:
            instances = self.client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
            for task in instances["task_instances"]:
                state = str(task["state"] or "queued")
                if seen.get(task["task_id"]) != state:
                    seen[task["task_id"]] = state
                    print(f"  task {task['task_id']}: {state}", flush=True)
            state = str(self.client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"])
            if state in ("success", "failed"):
                return state
            if time.monotonic() > deadline:
                raise ReleaseError(f"{dag_id} run {run_id}: no result after {timeout_s} s")
            time.sleep(self.poll_s)

    def _failure(self, dag_id: str, run_id: str) -> str:
        """` in task T: Error: message (log: ...)`, from the failed task's log."""
        base = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        failed = [t for t in self.client.get(base)["task_instances"] if t["state"] == "failed"]
        if not failed:
            return f" (run {run_id} of {dag_id})"
        task = failed[0]
        log = self.client.get(
            f"{base}/{task['task_id']}/logs/{task['try_number']}?full_content=true"
        )
        events = [str(e.get("event", "")) for e in log.get("content", []) if isinstance(e, dict)]
        message = ""
        for event in events:
            match = _EXCEPTION.search(event.strip())
            if match:
                message = ": ".join(g for g in match.groups() if g)
        where = f"{self.client.host}/dags/{dag_id}/runs/{run_id}"
        return f" in task {task['task_id']}: {message or 'see its log'} (log: {where})"
