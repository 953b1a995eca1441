"""OpenLineage run events for releases, workflow runs and steps (`conf/lineage/`).

`lineage: none | console | file | http` chooses where events go, through openlineage-python's
client and its transports. The settings travel to the steps as one pipeline parameter,
`lineage` (JSON, `settings_of`): compiled into a version's workflows for the runs an engine
starts by itself (schedules), and given again by every run `inv` starts, with the run that
started it as the parent.

Names (what a catalog shows, and joins on):
- namespace: `lineage.namespace`, by default `<project>.<env>`;
- a release: job `<project>.release`;
- a workflow run: job `<Airflow DAG id>` (`<project>_training__v1_4_0`, the name the Airflow
  OpenLineage provider gives the DAG, whichever engine runs it); its parent is the release;
- a step: job `<DAG id>.<step>`; its parent is its workflow run, or on Airflow the task
  instance that ran it (OPENLINEAGE_PARENT_ID, from the provider's `lineage_parent_id` macro).

Sending never changes a run's result: when the backend fails (down, slow, refusing), that
is said in one line and this process sends nothing more, so a backend that is down costs its
timeout once; a workflow run whose first event fails tells its steps to send nothing.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from {{ cookiecutter.package }}.errors import UserError

KINDS = ("none", "console", "file", "http")
DEFAULT_TIMEOUT_S = 5.0
# Where the project's own facets are described (deploy/openlineage/facets.json), by version.
PACKAGE = __name__.split(".")[0]
FACETS_FILE = "deploy/openlineage/facets.json"


def settings_of(cfg: Any, project_root: Path) -> dict[str, Any]:
    """The `lineage` pipeline parameter from the config: the transport, the namespace and
    the producer; a relative file path is the project's (a task runs in another folder).
    A kind that does not exist, or a transport without its address, is refused in one line."""
    from omegaconf import OmegaConf

    found = cfg.get("lineage")
    spec: dict[str, Any] = OmegaConf.to_container(found, resolve=True) if found else {}  # type: ignore[assignment]
    kind = str(spec.get("kind", "none"))
    if kind not in KINDS:
        raise UserError(f"lineage.kind {kind!r}: use one of {', '.join(KINDS)}")
    settings: dict[str, Any] = {"kind": kind}
    if kind == "none":
        return settings
    repository = str(spec.get("repository") or "").rstrip("/")
    settings.update(
        namespace=str(spec.get("namespace") or f"{cfg.project}.{cfg.env.name}"),
        producer=f"{repository}/tree/v{cfg.version}" if repository else "",
        facets_url=f"{repository}/blob/v{cfg.version}/{FACETS_FILE}" if repository else "",
        timeout_seconds=float(spec.get("timeout_seconds") or DEFAULT_TIMEOUT_S),
    )
    if kind == "file":
        if not spec.get("path"):
            raise UserError("lineage.path is not set: name the file events are appended to")
        path = Path(str(spec["path"])).expanduser()
        settings["path"] = str(path if path.is_absolute() else project_root / path)
    if kind == "http":
        if not spec.get("url"):
            raise UserError("lineage.url is not set: name the lineage backend (OPENLINEAGE_URL)")
        settings.update(
            url=str(spec["url"]),
            endpoint=str(spec.get("endpoint") or "api/v1/lineage"),
            api_key_env=str(spec.get("api_key_env") or ""),
        )
    return settings


@dataclass(frozen=True)
class RunRef:
    """A run as a parent facet names it."""

    namespace: str
    job: str
    run_id: str

    @classmethod
    def parse(cls, text: str) -> RunRef | None:
        """`namespace/job/run_id` (the Airflow provider's `lineage_parent_id`); None if not."""
        namespace, _, rest = text.partition("/")
        job, _, run_id = rest.rpartition("/")
        try:
            uuid.UUID(run_id)
        except ValueError:
            return None
        return cls(namespace, job, run_id) if namespace and job else None


@dataclass
class Lineage:
    """Where this process sends events (`settings_of`'s dict); off after its first failure."""

    settings: dict[str, Any]
    parent: RunRef | None = None
    _client: Any = field(default=None, repr=False)
    failed: bool = False

    @classmethod
    def from_json(cls, text: str | dict | None) -> Lineage:
        settings = dict(json.loads(text) if isinstance(text, str) and text else text or {})
        parent = settings.pop("parent", None)
        return cls(settings, RunRef(**parent) if parent else None)

    def to_json(self, parent: RunRef | None = None) -> str:
        """The `lineage` parameter for a run whose parent is `parent` (or this one's)."""
        settings = dict(self.settings)
        parent = parent or self.parent
        if parent is not None:
            settings["parent"] = parent.__dict__
        if self.failed:  # the backend failed this run's first event: its steps send nothing
            settings["kind"] = "none"
        return json.dumps(settings, sort_keys=True)

    @property
    def enabled(self) -> bool:
        return self.settings.get("kind", "none") != "none" and not self.failed

    @property
    def namespace(self) -> str:
        return str(self.settings.get("namespace", "default"))

    def producer(self) -> str:
        from openlineage.client.event_v2 import PRODUCER

        return str(self.settings.get("producer") or PRODUCER)

    def facet_schema(self, name: str) -> str:
        """The schema URL of one of the project's facets (`deploy/openlineage/facets.json`)."""
        return f"{self.settings.get('facets_url') or FACETS_FILE}#/$defs/{name}"

    def client(self) -> Any:
        if self._client is None:
            self._client = _client_of(self.settings)
        return self._client

    def emit(self, event: Any) -> None:
        """Send `event`; a failure is one line on the output, and nothing more is sent."""
        if not self.enabled:
            return
        try:
            self.client().emit(event)
        except Exception as error:  # noqa: BLE001 - whatever the transport raises
            self.failed = True
            where = self.settings.get("url") or self.settings.get("path") or "console"
            print(f"lineage: not sent to {where} ({one_line(error)}); this run sends no more")


def _client_of(settings: dict[str, Any]) -> Any:
    from openlineage.client import OpenLineageClient
    from openlineage.client.transport.console import ConsoleConfig, ConsoleTransport
    from openlineage.client.transport.file import FileConfig, FileTransport
    from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport

    kind = settings["kind"]
    if kind == "file":
        Path(settings["path"]).parent.mkdir(parents=True, exist_ok=True)
        return OpenLineageClient(
            transport=FileTransport(FileConfig(log_file_path=settings["path"], append=True))
        )
    if kind == "http":
        key = os.environ.get(settings.get("api_key_env") or "", "")
        config = HttpConfig.from_dict(
            {
                "url": settings["url"],
                "endpoint": settings["endpoint"],
                "timeout": settings["timeout_seconds"],
                "retry": {"total": 0},  # a backend that is down costs one timeout, not five
            }
        )
        if key:  # from the environment only: never in a config or a compiled workflow
            config.auth = ApiKeyTokenProvider({"api_key": key})
        return OpenLineageClient(transport=HttpTransport(config))
    # The console transport logs each event at INFO: shown on the step's log (stdout).
    logger = logging.getLogger(ConsoleTransport.__module__)
    if not logger.handlers:
        logger.addHandler(logging.StreamHandler(sys.stdout))
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return OpenLineageClient(transport=ConsoleTransport(ConsoleConfig()))


def new_run_id() -> str:
    """A run id as OpenLineage wants it: a UUID, v7 (ordered by time)."""
    from openlineage.client.uuid import generate_new_uuid

    return str(generate_new_uuid())


def one_line(error: BaseException) -> str:
    """The error as the user sees it: its type and first line, no traceback."""
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@dataclass
class RunningJob:
    """A run between its START and its end: what it read and wrote is added as it goes."""

    lineage: Lineage
    job: str
    run_id: str
    parent: RunRef | None
    job_facets: dict[str, Any] = field(default_factory=dict)
    run_facets: dict[str, Any] = field(default_factory=dict)
    inputs: list[Any] = field(default_factory=list)
    outputs: list[Any] = field(default_factory=list)

    @property
    def ref(self) -> RunRef:
        return RunRef(self.lineage.namespace, self.job, self.run_id)

    def event(self, state: str, error: BaseException | None = None) -> Any:
        from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
        from openlineage.client.facet_v2 import error_message_run, parent_run

        run_facets = dict(self.run_facets)
        if self.parent is not None:
            run_facets["parent"] = parent_run.ParentRunFacet(
                run=parent_run.Run(runId=self.parent.run_id),
                job=parent_run.Job(namespace=self.parent.namespace, name=self.parent.job),
            )
        if error is not None:
            run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=one_line(error), programmingLanguage="python"
            )
        return RunEvent(
            eventType=getattr(RunState, state),
            eventTime=datetime.now(UTC).isoformat(),
            run=Run(runId=self.run_id, facets=run_facets),
            job=Job(namespace=self.lineage.namespace, name=self.job, facets=self.job_facets),
            producer=self.lineage.producer(),
            inputs=self.inputs if state != "START" else [],
            outputs=self.outputs if state != "START" else [],
        )


@contextmanager
def job_run(
    lineage: Lineage, job: str, job_type: str, parent: RunRef | None = None
) -> Iterator[RunningJob]:
    """START `job` (a new run of it), then COMPLETE, or FAIL with the error's one line (the
    error itself goes on). `job_type` is OpenLineage's jobType: JOB, DAG or TASK."""
    running = RunningJob(lineage, job, new_run_id() if lineage.enabled else "", parent)
    if not lineage.enabled:
        yield running
        return
    from openlineage.client.facet_v2 import job_type_job

    running.job_facets["jobType"] = job_type_job.JobTypeJobFacet(
        processingType="BATCH", integration=PACKAGE.upper(), jobType=job_type
    )
    lineage.emit(running.event("START"))
    try:
        yield running
    except BaseException as error:
        if lineage.enabled:
            lineage.emit(running.event("FAIL", error))
        raise
    if lineage.enabled:
        lineage.emit(running.event("COMPLETE"))
