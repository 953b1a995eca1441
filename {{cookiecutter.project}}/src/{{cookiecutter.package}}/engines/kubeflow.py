"""Kubeflow Pipelines (dev, prod) through `kfp.Client` and its v2beta1 REST API.

One pipeline per workflow (`{project}-training`, `{project}-inference`), one pipeline version
per release version, one experiment per environment, and per version one recurring run per
workflow. Credentials come from the environment (in-cluster service account, or a token from
`gcloud auth print-access-token` through KFP_TOKEN); nothing is stored in the project.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from {{ cookiecutter.package }}.artifacts.names import WORKFLOWS, ReleaseNames, Workflow
from {{ cookiecutter.package }}.artifacts.store import ArtifactStore
from {{ cookiecutter.package }}.engines import Schedule
from {{ cookiecutter.package }}.engines.version_env import VersionEnvironments
from {{ cookiecutter.package }}.errors import ReleaseError

FINISHED = {"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED", "CANCELLED"}


def _equals(key: str, value: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": key, "stringValue": value}]})


@contextmanager
def _spec_file(spec: str) -> Iterator[str]:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "pipeline.yaml"
        path.write_text(spec)
        yield str(path)


class KfpEngine:
    def __init__(
        self, client: Any, experiment: str, poll_seconds: float = 10.0, host: str = "kfp:"
    ) -> None:
        self.client, self.host = client, host.rstrip("/")
        self.experiment = experiment
        self.poll_seconds = poll_seconds
        self._experiment_id: str | None = None

    @classmethod
    def from_config(
        cls,
        cfg: Any,
        store: ArtifactStore | None = None,
        project_root: Path | None = None,
        environments: VersionEnvironments | None = None,
    ) -> KfpEngine:
        host = str(cfg.env.kfp_host or "")
        if not host:
            raise ReleaseError(
                f"no Kubeflow Pipelines host for {cfg.env.name}: set KFP_HOST "
                f"or env.kfp_host in conf/env/{cfg.env.name}.yaml"
            )
        import kfp

        try:
            client = kfp.Client(host=host, existing_token=os.environ.get("KFP_TOKEN"))
        except Exception as error:  # kfp raises many types while connecting
            raise ReleaseError(f"cannot reach Kubeflow Pipelines at {host}: {error}") from error
        poll_seconds = float(cfg.env.get("kfp_poll_seconds", 10.0))
        return cls(client, str(cfg.env.experiment), poll_seconds, host)

    def check(self) -> None:
        try:
            self.client.get_kfp_healthz()
        except Exception as error:
            raise ReleaseError(f"Kubeflow Pipelines is not healthy: {error}") from error

    def prepare(self, names: ReleaseNames) -> str:
        # Every task of the version runs in the version's image, which `inv build` pushed.
        return f"runs in {names.image}"

    def experiment_id(self) -> str:
        if self._experiment_id is None:
            self._experiment_id = str(self.client.create_experiment(self.experiment).experiment_id)
        return self._experiment_id

    # -- pipeline versions ---------------------------------------------------------------
    def _pipeline_id(self, names: ReleaseNames, workflow: Workflow) -> str | None:
        return self.client.get_pipeline_id(names.pipeline_name(workflow))

    def _version(self, pipeline_id: str, version: str) -> Any | None:
        found = (
            self.client.list_pipeline_versions(
                pipeline_id, filter=_equals("display_name", version)
            ).pipeline_versions
            or []
        )
        return next((v for v in found if v.display_name == version), None)

    def register(self, names: ReleaseNames, workflow: Workflow, spec: str) -> str:
        """The version's pipeline version, uploaded once; refused if it differs."""
        pipeline_name = names.pipeline_name(workflow)
        with _spec_file(spec) as path:
            pipeline_id = self._pipeline_id(names, workflow)
            if pipeline_id is None:
                # KFP quirk: the first upload creates the pipeline with an unnamed default
                # version; the release's own version is uploaded next to it.
                pipeline_id = self.client.upload_pipeline(
                    path,
                    pipeline_name=pipeline_name,
                    description=f"{workflow} pipeline of {names.project}",
                ).pipeline_id
            existing = self._version(pipeline_id, names.pipeline_version_name)
            if existing is not None:
                if existing.pipeline_spec != yaml.safe_load(spec):
                    raise ReleaseError(
                        f"pipeline version {pipeline_name}/{names.pipeline_version_name} exists "
                        "with a different spec: a released pipeline never changes, bump the "
                        "version"
                    )
                return str(existing.pipeline_version_id)
            # KFP quirk: a version name can be uploaded only once (checked just above).
            created = self.client.upload_pipeline_version(
                path,
                pipeline_version_name=names.pipeline_version_name,
                pipeline_id=pipeline_id,
                description=f"release {names.version}",
            )
            return str(created.pipeline_version_id)

    def address(self, names: ReleaseNames, workflow: Workflow) -> str:
        return f"{self.host} pipeline {names.pipeline_name(workflow)} version {names.version}"

    def registered(self, names: ReleaseNames, workflow: Workflow) -> bool:
        pipeline_id = self._pipeline_id(names, workflow)
        return pipeline_id is not None and (
            self._version(pipeline_id, names.pipeline_version_name) is not None
        )

    # -- one-off runs --------------------------------------------------------------------
    def run(
        self,
        names: ReleaseNames,
        workflow: Workflow,
        spec: str,
        arguments: dict[str, Any],
        timeout_s: int,
    ) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        with _spec_file(spec) as path:
            run = self.client.run_pipeline(
                self.experiment_id(),
                names.adhoc_run_name(workflow, stamp),
                pipeline_package_path=path,
                params=arguments,
            )
        run_id = str(run.run_id)
        print(f"submitted {names.adhoc_run_name(workflow, stamp)} (run {run_id})")
        deadline = time.monotonic() + timeout_s
        last_state = None
        while True:
            run = self.client.get_run(run_id)
            state = str(run.state or "PENDING").upper()
            if state != last_state:
                print(f"run {run_id}: {state}")
                last_state = state
            if state in FINISHED:
                break
            if time.monotonic() > deadline:
                raise ReleaseError(f"run {run_id} still {state} after {timeout_s}s")
            time.sleep(self.poll_seconds)
        if state != "SUCCEEDED":
            error = getattr(run, "error", None)
            message = getattr(error, "message", None) or "no error message"
            raise ReleaseError(
                f"{names.pipeline_name(workflow)} {names.version} run {run_id} "
                f"ended {state}: {message}"
            )
        return run_id

    # -- recurring runs ------------------------------------------------------------------
    def _recurring_runs(self, names: ReleaseNames) -> list[Any]:
        found = []
        for workflow in WORKFLOWS:
            name = names.recurring_run_name(workflow)
            response = self.client.list_recurring_runs(
                experiment_id=self.experiment_id(), filter=_equals("display_name", name)
            )
            found += [r for r in response.recurring_runs or [] if r.display_name == name]
        return found

    def schedules(self, names: ReleaseNames) -> list[Schedule]:
        schedules = []
        for run in self._recurring_runs(names):
            workflow = next(w for w in WORKFLOWS if names.recurring_run_name(w) == run.display_name)
            trigger = run.trigger
            schedules.append(
                Schedule(
                    workflow=workflow,
                    name=run.display_name,
                    enabled=str(run.mode).upper() == "ENABLE",
                    cron=trigger.cron_schedule.cron if trigger.cron_schedule else None,
                    interval_seconds=(
                        int(trigger.periodic_schedule.interval_second)
                        if trigger.periodic_schedule
                        else None
                    ),
                    parameters=dict(run.runtime_config.parameters or {}),
                    max_concurrency=int(run.max_concurrency or 1),
                    no_catchup=bool(run.no_catchup),
                )
            )
        return schedules

    def create_schedules(self, names: ReleaseNames, schedules: list[Schedule]) -> None:
        for schedule in schedules:
            pipeline_id = self._pipeline_id(names, schedule.workflow)
            version = (
                self._version(pipeline_id, names.pipeline_version_name) if pipeline_id else None
            )
            if version is None:
                raise ReleaseError(
                    f"{names.pipeline_name(schedule.workflow)} has no version "
                    f"{names.version}: deploy the workflows first"
                )
            self.client.create_recurring_run(
                self.experiment_id(),
                schedule.name,
                description=f"{schedule.workflow} of release {names.version}",
                cron_expression=schedule.cron,
                interval_second=schedule.interval_seconds,
                max_concurrency=schedule.max_concurrency,
                no_catchup=schedule.no_catchup,
                params=schedule.parameters,
                pipeline_id=pipeline_id,
                version_id=version.pipeline_version_id,
                enabled=schedule.enabled,
            )

    def set_enabled(self, names: ReleaseNames, enabled: bool) -> None:
        runs = self._recurring_runs(names)
        if not runs:
            raise ReleaseError(f"version {names.version} has no recurring runs")
        for run in runs:
            if enabled:
                self.client.enable_recurring_run(run.recurring_run_id)
            else:
                self.client.disable_recurring_run(run.recurring_run_id)

    # -- retention -----------------------------------------------------------------------
    def details(self, names: ReleaseNames) -> str:
        return ""

    def holdings(self, names: ReleaseNames) -> list[str]:
        """The version's recurring runs, then its pipeline versions (a schedule names one)."""
        found = [
            self._address("recurringruns", r.recurring_run_id) for r in self._recurring_runs(names)
        ]
        for workflow in WORKFLOWS:
            pipeline_id = self._pipeline_id(names, workflow)
            version = (
                self._version(pipeline_id, names.pipeline_version_name) if pipeline_id else None
            )
            if pipeline_id and version is not None:
                found.append(
                    self._address("pipelines", pipeline_id, "versions", version.pipeline_version_id)
                )
        return found

    def forget(self, names: ReleaseNames, address: str) -> None:
        resource = address.removeprefix(self._address()).split("/")
        if address in self.holdings(names):
            if resource[0] == "recurringruns":
                self.client.delete_recurring_run(resource[1])
            else:
                self.client.delete_pipeline_version(resource[1], resource[3])
        elif not address.startswith(self._address()) or resource[0] not in (
            "recurringruns",
            "pipelines",
        ):
            raise ReleaseError(f"{address} is not a pipeline version or recurring run of KFP")

    def _address(self, *parts: str) -> str:
        """A resource's address in KFP's REST API (v2beta1)."""
        return "/".join((f"{self.host}/apis/v2beta1", *parts)) + ("" if parts else "/")
