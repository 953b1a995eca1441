"""The Vertex AI Pipelines engine: a version's compiled workflows as templates in an
Artifact Registry Kubeflow Pipelines repository, run and scheduled by Vertex AI.

- `register` uploads the compiled spec with kfp's `RegistryClient`, tagged with the version
  as GCP names accept it (`v1-4-0`). Artifact Registry names a template version by the
  sha256 of its bytes; the tag never moves: a second upload of the version with other bytes
  is refused, an equal one reused.
- Runs and schedules name a template by that sha256 address (`{templates}/{package}/sha256:
  ...`), never by its tag: Vertex refuses tags in some paths (googleapis/python-aiplatform
  #2181, GoogleCloudPlatform/vertex-pipelines-deployer#13), and the address cannot move.
- `run` creates a PipelineJob of the version's parameters (`pipeline_root`, service account,
  network and labels from config) and waits for it. An ad-hoc run uploads its spec untagged
  (a template by address only), so `train-adhoc` with other settings never moves a tag.
- One PipelineJobSchedule per version and workflow, found by display name: created once,
  replaced when it differs, paused and resumed by traffic moves and `retire`.

Credentials are Application Default Credentials (workload identity in CI and on a cluster,
`gcloud auth application-default login` on a laptop). A plain-HTTP `api_endpoint` (a local
server, as in the tests) is called without credentials.
"""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from {{ cookiecutter.package }}.artifacts.names import (
    WORKFLOWS,
    ReleaseNames,
    Workflow,
)
from {{ cookiecutter.package }}.artifacts.store import ArtifactStore
from {{ cookiecutter.package }}.engines import Schedule
from {{ cookiecutter.package }}.engines.version_env import VersionEnvironments
from {{ cookiecutter.package }}.engines.vertex_api import (
    TemplateRepository,
    VertexSettings,
    credentials_for,
    google_errors,
    pipeline_job,
    same_schedule,
    spec_digest,
    version_label,
    vertex_cron,
)
from {{ cookiecutter.package }}.errors import ReleaseError

SUCCEEDED = "PIPELINE_STATE_SUCCEEDED"
FINISHED = {SUCCEEDED, "PIPELINE_STATE_FAILED", "PIPELINE_STATE_CANCELLED"}


class VertexEngine:
    def __init__(
        self, settings: VertexSettings, pipelines: Any, schedules: Any, registry: Any
    ) -> None:
        self.settings, self.pipelines, self.scheduler, self.registry = (
            settings,
            pipelines,
            schedules,
            registry,
        )
        self.templates = TemplateRepository(registry, settings.templates)

    @classmethod
    def from_config(
        cls,
        cfg: Any,
        store: ArtifactStore | None = None,
        project_root: Path | None = None,
        environments: VersionEnvironments | None = None,
    ) -> VertexEngine:
        spec = cfg.env.get("vertex")
        if not spec:
            raise ReleaseError(
                f"env {cfg.env.name} has no `vertex:` settings: copy them from conf/env/dev.yaml"
            )
        try:
            settings = VertexSettings(**dict(spec))
        except TypeError as error:
            raise ReleaseError(f"env.vertex: {error}") from None
        if not settings.templates or not settings.pipeline_root:
            raise ReleaseError(
                "env.vertex needs `templates` (a KFP repository) and `pipeline_root`"
            )
        from google.cloud.aiplatform_v1.services.pipeline_service import PipelineServiceClient
        from google.cloud.aiplatform_v1.services.schedule_service import ScheduleServiceClient
        from kfp.registry import RegistryClient

        with google_errors("authenticate"):
            credentials = credentials_for(settings.endpoint)
            options = {"api_endpoint": settings.endpoint}
            pipelines = PipelineServiceClient(
                credentials=credentials, transport="rest", client_options=options
            )
            schedules = ScheduleServiceClient(
                credentials=credentials, transport="rest", client_options=options
            )
            # kfp authenticates to a *-kfp.pkg.dev host with these credentials; another
            # host (a local server) takes none.
            on_google = ".pkg.dev/" in settings.templates
            registry = RegistryClient(
                host=settings.templates, auth=credentials if on_google else None
            )
        return cls(settings, pipelines, schedules, registry)

    # -- the Engine protocol ----------------------------------------------------------------
    def check(self) -> None:
        with google_errors(f"read the templates in {self.settings.templates}"):
            self.registry.list_packages()
        with google_errors(f"list pipeline jobs in {self.settings.parent}"):
            self.pipelines.list_pipeline_jobs(
                request={"parent": self.settings.parent, "page_size": 1}
            )

    def prepare(self, names: ReleaseNames) -> str:
        return f"runs in Vertex AI ({self.settings.parent}) with {names.image}"

    def register(self, names: ReleaseNames, workflow: Workflow, spec: str) -> str:
        """The version's template, tagged with its version: uploaded once, never moved."""
        package, tag = names.pipeline_name(workflow), version_label(names.version)
        return self.templates.register(package, tag, spec)

    def address(self, names: ReleaseNames, workflow: Workflow) -> str:
        package, tag = names.pipeline_name(workflow), version_label(names.version)
        return f"{self.settings.templates}/{package}:{tag}"

    def registered(self, names: ReleaseNames, workflow: Workflow) -> bool:
        return (
            self.templates.tagged(names.pipeline_name(workflow), version_label(names.version))
            is not None
        )

    def run(
        self,
        names: ReleaseNames,
        workflow: Workflow,
        spec: str,
        arguments: dict[str, Any],
        timeout_s: int,
    ) -> str:
        package, digest = names.pipeline_name(workflow), spec_digest(spec)
        if not self.templates.has_version(package, digest):
            self.templates.upload(package, spec, digest, [])
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        job_id = f"{package}-{version_label(names.version)}-{stamp}"[:128]
        job = pipeline_job(
            self.settings, names, workflow, self.templates.address(package, digest), arguments
        )
        job["display_name"] = names.adhoc_run_name(workflow, stamp)
        with google_errors(f"create a pipeline job of {package} {names.version}"):
            created = self.pipelines.create_pipeline_job(
                request={
                    "parent": self.settings.parent,
                    "pipeline_job": job,
                    "pipeline_job_id": job_id,
                }
            )
        print(f"submitted {created.name}")
        deadline = time.monotonic() + timeout_s
        last = ""
        while True:
            with google_errors(f"read {created.name}"):
                current = self.pipelines.get_pipeline_job(name=created.name)
            state = current.state.name
            if state != last:
                print(f"{job_id}: {state.removeprefix('PIPELINE_STATE_')}", flush=True)
                last = state
            if state in FINISHED:
                break
            if time.monotonic() > deadline:
                raise ReleaseError(f"{created.name} still {state} after {timeout_s} s")
            time.sleep(self.settings.poll_seconds)
        if state != SUCCEEDED:
            message = current.error.message or "no error message"
            raise ReleaseError(
                f"{package} {names.version} run {job_id} ended "
                f"{state.removeprefix('PIPELINE_STATE_')}: {message}"
            )
        return str(created.name)

    def schedules(self, names: ReleaseNames) -> list[Schedule]:
        found = []
        for workflow in WORKFLOWS:
            existing = self._schedule(names.recurring_run_name(workflow))
            if existing is None:
                continue
            request = existing.create_pipeline_job_request.pipeline_job
            found.append(
                Schedule(
                    workflow=workflow,
                    name=existing.display_name,
                    enabled=existing.state.name == "ACTIVE",
                    cron=existing.cron,
                    parameters=dict(request.runtime_config.parameter_values),
                    max_concurrency=int(existing.max_concurrent_run_count or 1),
                )
            )
        return found

    def create_schedules(self, names: ReleaseNames, schedules: list[Schedule]) -> None:
        """One schedule per workflow, found by display name: kept when it is what the
        version asks for, replaced otherwise (the kedro-vertexai way)."""
        for schedule in schedules:
            package = names.pipeline_name(schedule.workflow)
            tagged = self.templates.tagged(package, version_label(names.version))
            if tagged is None:
                raise ReleaseError(
                    f"{package} has no template {names.version}: deploy the workflows first"
                )
            job = pipeline_job(
                self.settings,
                names,
                schedule.workflow,
                self.templates.address(package, tagged),
                schedule.parameters,
            )
            job["display_name"] = schedule.name
            wanted = {
                "display_name": schedule.name,
                "cron": vertex_cron(schedule),
                "max_concurrent_run_count": schedule.max_concurrency,
                "create_pipeline_job_request": {
                    "parent": self.settings.parent,
                    "pipeline_job": job,
                },
            }
            existing = self._schedule(schedule.name)
            if existing is not None and not same_schedule(existing, wanted):
                self._delete_schedule(existing.name)
                existing = None
            if existing is None:
                with google_errors(f"create schedule {schedule.name}"):
                    existing = self.scheduler.create_schedule(
                        request={"parent": self.settings.parent, "schedule": wanted}
                    )
            self._set_state(existing, schedule.enabled)

    def set_enabled(self, names: ReleaseNames, enabled: bool) -> None:
        found = [s for w in WORKFLOWS if (s := self._schedule(names.recurring_run_name(w)))]
        if not found:
            raise ReleaseError(f"version {names.version} has no schedules in Vertex AI")
        for schedule in found:
            self._set_state(schedule, enabled)

    def holdings(self, names: ReleaseNames) -> list[str]:
        """Its schedules, then per workflow its template's tag and version (a version other
        versions' tags name stays)."""
        found = [
            f"{self.settings.endpoint}/v1/{s.name}"
            for w in WORKFLOWS
            if (s := self._schedule(names.recurring_run_name(w)))
        ]
        tag = version_label(names.version)
        for workflow in WORKFLOWS:
            package = names.pipeline_name(workflow)
            digest = self.templates.tagged(package, tag)
            if digest is None:
                continue
            found.append(f"{self.settings.templates}/{package}/{tag}")
            with google_errors(f"list the tags of {package}"):
                others = [
                    t
                    for t in self.registry.list_tags(package)
                    if not t["name"].endswith(f"/tags/{tag}")
                ]
            if not any(t["version"].endswith(f"/versions/{digest}") for t in others):
                found.append(self.templates.address(package, digest))
        return found

    def forget(self, names: ReleaseNames, address: str) -> None:
        """Remove one of `holdings`: only the version's own, and a template version only
        while no tag names it."""
        import requests

        if address.startswith(f"{self.settings.endpoint}/v1/"):
            name = address.removeprefix(f"{self.settings.endpoint}/v1/")
            mine = {names.recurring_run_name(w) for w in WORKFLOWS}
            found = next((s for s in map(self._schedule, mine) if s and s.name == name), None)
            if found is not None:
                self._delete_schedule(name)
            return
        package, _, name = address.removeprefix(self.settings.templates + "/").partition("/")
        if package not in {names.pipeline_name(w) for w in WORKFLOWS}:
            raise ReleaseError(f"{address} is not one of version {names.version}'s templates")
        with google_errors(f"delete {address}"):
            try:
                if name == version_label(names.version):
                    self.registry.delete_tag(package, name)
                elif name.startswith("sha256:"):
                    tags = self.registry.list_tags(package)
                    if not any(t["version"].endswith(f"/versions/{name}") for t in tags):
                        self.registry.delete_version(package, name)
                else:
                    raise ReleaseError(f"{address} is not one of {names.version}'s templates")
            except requests.HTTPError as error:
                if error.response is None or error.response.status_code != 404:
                    raise  # gone already is fine

    def details(self, names: ReleaseNames) -> str:
        """Per workflow, its template's address and the state of its newest run."""
        parts = []
        for workflow in WORKFLOWS:
            digest = self.templates.tagged(
                names.pipeline_name(workflow), version_label(names.version)
            )
            if digest is None:
                continue
            label = version_label(names.version)
            with google_errors(f"list the runs of {names.version}"):
                newest = list(
                    self.pipelines.list_pipeline_jobs(
                        request={
                            "parent": self.settings.parent,
                            "filter": f'labels.version="{label}" AND labels.workflow="{workflow}"',
                            "order_by": "create_time desc",
                            "page_size": 1,
                        }
                    ).pipeline_jobs
                )
            state = newest[0].state.name.removeprefix("PIPELINE_STATE_") if newest else "none"
            parts.append(f"{workflow} {digest[:19]} last run {state}")
        return "; ".join(parts)

    # -- Vertex AI and Artifact Registry ----------------------------------------------------
    def _schedule(self, display_name: str) -> Any | None:
        with google_errors(f"list schedules {display_name}"):
            found = self.scheduler.list_schedules(
                request={"parent": self.settings.parent, "filter": f'display_name="{display_name}"'}
            )
            return next((s for s in found if s.display_name == display_name), None)

    def _set_state(self, schedule: Any, enabled: bool) -> None:
        state = schedule.state.name
        with google_errors(f"{'resume' if enabled else 'pause'} {schedule.display_name}"):
            if enabled and state == "PAUSED":
                self.scheduler.resume_schedule(name=schedule.name)
            elif not enabled and state == "ACTIVE":
                self.scheduler.pause_schedule(name=schedule.name)

    def _delete_schedule(self, name: str) -> None:
        from google.api_core.exceptions import NotFound

        with google_errors(f"delete {name}"), contextlib.suppress(NotFound):
            self.scheduler.delete_schedule(name=name).result(timeout=300)
