"""Apache Airflow as the workflow engine: one DAG per version and workflow.

Airflow does not version DAGs, so the id does: `<project>_training__v1_2_0` and
`<project>_inference__v1_2_0` (`ReleaseNames.airflow_dag_id`). Registering a version's
workflow writes its DAG file to the DAGs folder (a local path, or Composer's
`gs://<bucket>/dags` through the artifact store), create-only: the same file again is a
no-op, a different one under the same version is refused. Then it waits until Airflow has
parsed it. Its schedule is in the file (from `conf/config.yaml: schedules`); whether it runs
is the DAG's paused state: new DAGs start paused, `create_schedules` unpauses, `retire` and
`rollback` pause and unpause, nothing is ever deleted.

Each task runs `python -m {{ cookiecutter.package }}.pipelines.run_step` with the version's
own interpreter (its environment, built from its released wheel), so every version runs its
own code beside the others. In a cluster (`AIRFLOW_OPERATOR=kubernetes`, e.g. Cloud
Composer) each task is a KubernetesPodOperator running the same command in the version's
image.

Everything goes through Airflow's stable REST API (v2): `AIRFLOW_HOST`, and a token
(`AIRFLOW_TOKEN`) or a user (`AIRFLOW_USERNAME`, `AIRFLOW_PASSWORD`) exchanged at
`/auth/token`.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

import yaml

from {{ cookiecutter.package }}.artifacts.code import read_code
from {{ cookiecutter.package }}.artifacts.names import WORKFLOWS, ReleaseNames, Workflow
from {{ cookiecutter.package }}.artifacts.store import AlreadyExistsError, ArtifactStore, open_store
from {{ cookiecutter.package }}.engines import Schedule
from {{ cookiecutter.package }}.engines.version_env import VersionEnvironments
from {{ cookiecutter.package }}.errors import ReleaseError
from {{ cookiecutter.package }}.pipelines.run_step import encode
from {{ cookiecutter.package }}.pipelines.step_table import tasks

_EXCEPTION = re.compile(r"error: (\w+): (.+)$|^(\w*(?:Error|Exception)): (.+)$")
STEP_MODULE = "{{ cookiecutter.package }}.pipelines.run_step"
# bash: the version's environment on the Airflow workers' machine (local, tests);
# kubernetes: a pod of the version's image (Cloud Composer, any cluster).
OPERATORS = ("bash", "kubernetes")
# Jinja of Airflow's templates, built here so that no template engine renders it early.
_RUN_ID_TEMPLATE = "{" + "{ dag_run.conf.get('run_id', '') if dag_run.conf else '' }" + "}"


class AirflowClient:
    """Airflow's REST API v2 over plain HTTP, with its errors as one-line ReleaseErrors."""

    def __init__(
        self,
        host: str,
        token: str = "",
        username: str = "",
        password: str = "",
        timeout_s: float = 30,
        google: bool = False,
    ) -> None:
        if not host:
            raise ReleaseError("no Airflow host: set AIRFLOW_HOST (e.g. http://127.0.0.1:8080)")
        self.host, self.timeout_s = host.rstrip("/"), timeout_s
        self._token, self._user, self._google = token, (username, password), google

    def token(self) -> str:
        if not self._token and self._google:
            self._token = google_access_token()
        if not self._token:
            username, password = self._user
            if not username:
                raise ReleaseError(
                    "no Airflow credentials: set AIRFLOW_TOKEN, or AIRFLOW_USERNAME and "
                    "AIRFLOW_PASSWORD"
                )
            answer = self._send(
                "POST", "/auth/token", {"username": username, "password": password}, auth=False
            )
            self._token = str(answer["access_token"])
        return self._token

    def _send(
        self,
        method: str,
        path: str,
        body: Any = None,
        auth: bool = True,
        not_found: type[Exception] = ReleaseError,
    ) -> Any:
        headers = {"content-type": "application/json"}
        if auth:
            headers["authorization"] = f"Bearer {self.token()}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.host + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:200]
            if error.code == 404:
                raise not_found(f"Airflow has no {path}: {detail}") from None
            raise ReleaseError(f"Airflow {method} {path}: HTTP {error.code} {detail}") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ReleaseError(f"cannot reach Airflow at {self.host}: {reason}") from None

    def get(self, path: str) -> Any:
        """GET; LookupError when Airflow has no such thing (404)."""
        return self._send("GET", path, not_found=LookupError)

    def post(self, path: str, body: Any) -> Any:
        return self._send("POST", path, body)

    def patch(self, path: str, body: Any) -> Any:
        return self._send("PATCH", path, body)


def google_access_token() -> str:
    """An OAuth access token from Application Default Credentials: what Cloud Composer's
    Airflow REST API takes as a bearer token (workload identity in CI, gcloud locally)."""
    import google.auth
    import google.auth.transport.requests
    from google.auth.exceptions import DefaultCredentialsError, GoogleAuthError

    try:
        credentials, _ = google.auth.default(
            scopes=["https://www.googleapis.com/auth/cloud-platform"]
        )
        credentials.refresh(google.auth.transport.requests.Request())
    except DefaultCredentialsError:
        raise ReleaseError(
            "no Google Cloud credentials for Cloud Composer: run `gcloud auth "
            "application-default login` (locally) or use workload identity (CI, cluster)"
        ) from None
    except GoogleAuthError as error:
        raise ReleaseError(f"cannot get a Google access token: {error}") from None
    return str(credentials.token)


def task_id(task: str) -> str:
    """Airflow's id of a step table task (`build-features` -> `build_features`)."""
    return task.replace("-", "_")


def airflow_cron(kfp_cron: str) -> str:
    """KFP's cron has a seconds field first; Airflow's has five fields."""
    fields = kfp_cron.split()
    return " ".join(fields[1:] if len(fields) == 6 else fields)


def parameters_of(spec: str) -> dict[str, Any]:
    """The parameter defaults compiled into a version's pipeline spec: the same values the
    kfp engines run with."""
    inputs = yaml.safe_load(spec)["root"]["inputDefinitions"]["parameters"]
    # Defaults travel through protobuf Struct, where every number is a float.
    return {
        name: int(entry["defaultValue"])
        if entry.get("parameterType") == "NUMBER_INTEGER"
        else entry.get("defaultValue")
        for name, entry in inputs.items()
    }


class AirflowEngine:
    def __init__(self, cfg: Any, store: ArtifactStore, environments: VersionEnvironments) -> None:
        settings = cfg.env.airflow
        self.cfg, self.store, self.environments = cfg, store, environments
        self.client = AirflowClient(
            str(settings.host or ""),
            token=os.environ.get("AIRFLOW_TOKEN", ""),
            username=os.environ.get("AIRFLOW_USERNAME", ""),
            password=os.environ.get("AIRFLOW_PASSWORD", ""),
            google=str(settings.get("auth", "password")) == "google",
        )
        self.operator = str(settings.get("operator", "bash"))
        if self.operator not in OPERATORS:
            raise ReleaseError(
                f"env.airflow.operator must be one of {', '.join(OPERATORS)}, not {self.operator!r}"
            )
        self.dags = open_store(str(settings.dags_folder))
        self.parse_timeout_s = float(settings.parse_timeout_seconds)
        self.poll_s = float(settings.poll_seconds)

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
        runner = self._runner(names)[0].split(" = ", 1)[1]
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
        conf = {"run_id": str(arguments["run_id"])} if arguments.get("run_id") else {}
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
        entry = self.client.get(
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/"
            f"{last_task}/xcomEntries/return_value"
        )
        return str(entry["value"])

    # -- DAG files ----------------------------------------------------------------------------
    def render(self, names: ReleaseNames, workflow: Workflow, parameters: dict[str, Any]) -> str:
        """The DAG file of one version's workflow. Deterministic: the same version, code and
        parameters give the same bytes, so a rerun finds its own file."""
        record = read_code(self.store, names)
        started = record.created_at if record else "2024-01-01T00:00:00+00:00"
        schedule = self.cfg.schedules[workflow]
        if schedule.get("interval_seconds"):
            timing = f"timedelta(seconds={int(schedule.interval_seconds)})"
        else:
            timing = repr(airflow_cron(str(schedule.cron)))
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
            *self._runner(names),
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
        for task in tasks(workflow):  # the step table's command tasks, in order
            lines += self._task(names, workflow, task_id(task), task)
            if previous:
                lines.append(f"    {previous} >> {task_id(task)}")
            previous = task_id(task)
        return "\n".join(lines) + "\n"

    def _imports(self) -> list[str]:
        if self.operator == "kubernetes":
            return [
                "from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator"
            ]
        return ["from airflow.providers.standard.operators.bash import BashOperator"]

    def _runner(self, names: ReleaseNames) -> list[str]:
        """What runs the version's code: its environment's interpreter, or its image."""
        if self.operator == "kubernetes":
            return [f"IMAGE = {names.image!r}"]
        return [f"PYTHON = {self.environments.python_for(names)!r}"]

    def _task(self, names: ReleaseNames, workflow: Workflow, task_id: str, step: str) -> list[str]:
        env = "dict(STEP_ARGUMENTS=STEP_ARGUMENTS, RUN_ID=" + repr(_RUN_ID_TEMPLATE) + ")"
        if self.operator == "kubernetes":
            pod = f"{names.airflow_dag_id(workflow)}-{task_id}".replace("_", "-").lower()
            return [
                f"    {task_id} = KubernetesPodOperator(",
                f"        task_id={task_id!r},",
                f"        name={pod[:63]!r},",
                "        image=IMAGE,",
                f"        cmds=['python3', '-m', {STEP_MODULE!r}, {step!r}],",
                f"        env_vars={env},",
                "        do_xcom_push=True,  # run_step writes /airflow/xcom/return.json",
                "    )",
            ]
        command = f" -m {STEP_MODULE} {step}"
        return [
            f"    {task_id} = BashOperator(",
            f"        task_id={task_id!r},",
            f"        bash_command=PYTHON + {command!r},",
            f"        env={env},",
            "        append_env=True,",
            "    )",
        ]

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
