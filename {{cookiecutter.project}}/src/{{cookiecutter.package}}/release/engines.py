"""Where a version's pipelines run: kfp's local execution (env local) or Kubeflow Pipelines.

Both engines take the same compiled pipeline spec YAML; the local one keeps each version's
schedule as a record in the artifact store, Kubeflow Pipelines keeps recurring runs.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from {{ cookiecutter.package }}.release.errors import ReleaseError
from {{ cookiecutter.package }}.release.names import ReleaseNames, Workflow
from {{ cookiecutter.package }}.release.store import ArtifactStore


@dataclass(frozen=True)
class Schedule:
    """A version's recurring run: a cron expression (KFP's 6 fields) or an interval."""

    workflow: Workflow
    name: str
    enabled: bool
    cron: str | None = None
    interval_seconds: int | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    max_concurrency: int = 1
    no_catchup: bool = True


class Engine(Protocol):
    def check(self) -> None: ...

    def run(
        self,
        names: ReleaseNames,
        workflow: Workflow,
        spec: str,
        arguments: dict[str, Any],
        timeout_s: int,
    ) -> str:
        """Run `spec` once, wait for it, return its output; raise ReleaseError on failure."""

    def register(self, names: ReleaseNames, workflow: Workflow, spec: str) -> str:
        """Make `spec` the version's pipeline version; idempotent; return its id."""

    def registered(self, names: ReleaseNames, workflow: Workflow) -> bool:
        """Whether the engine holds the version's pipeline version of `workflow`."""

    def schedules(self, names: ReleaseNames) -> list[Schedule]: ...

    def create_schedules(self, names: ReleaseNames, schedules: list[Schedule]) -> None: ...

    def set_enabled(self, names: ReleaseNames, enabled: bool) -> None: ...


class LocalEngine:
    """kfp local execution (subprocess runner in this environment) of the compiled YAML."""

    def __init__(self, store: ArtifactStore, pipeline_root: Path) -> None:
        self.store = store
        self.pipeline_root = pipeline_root

    def check(self) -> None:
        try:
            import kfp.local  # noqa: F401
        except ImportError as error:
            raise ReleaseError(f"kfp local execution is unavailable: {error}") from error

    def run(
        self,
        names: ReleaseNames,
        workflow: Workflow,
        spec: str,
        arguments: dict[str, Any],
        timeout_s: int,
    ) -> str:
        import kfp.local
        from kfp import components

        self.pipeline_root.mkdir(parents=True, exist_ok=True)
        kfp.local.init(
            runner=kfp.local.SubprocessRunner(use_venv=False),
            pipeline_root=str(self.pipeline_root.resolve()),
            raise_on_error=True,
        )
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / f"{workflow}.yaml"
            path.write_text(spec)
            pipeline = components.load_component_from_file(str(path))
        try:
            task = pipeline(**arguments)
        except RuntimeError as error:
            raise ReleaseError(
                f"{names.pipeline_name(workflow)} {names.version} failed: {error}"
            ) from error
        return str(task.output)

    def register(self, names: ReleaseNames, workflow: Workflow, spec: str) -> str:
        # Locally the compiled spec in the store is the registered pipeline version.
        return names.uri(names.workflow_key(workflow))

    def registered(self, names: ReleaseNames, workflow: Workflow) -> bool:
        return self.store.exists(names.workflow_key(workflow))

    def schedules(self, names: ReleaseNames) -> list[Schedule]:
        if not self.store.exists(names.schedules_key):
            return []
        record = json.loads(self.store.read_text(names.schedules_key))
        return [Schedule(**entry) for entry in record["schedules"]]

    def create_schedules(self, names: ReleaseNames, schedules: list[Schedule]) -> None:
        self._save(names, schedules, create=True)

    def set_enabled(self, names: ReleaseNames, enabled: bool) -> None:
        current = self.schedules(names)
        if not current:
            raise ReleaseError(f"version {names.version} has no schedules")
        flipped = [replace(s, enabled=enabled) for s in current]
        self._save(names, flipped, create=False)

    def _save(self, names: ReleaseNames, schedules: list[Schedule], create: bool) -> None:
        record = json.dumps(
            {"version": names.version, "schedules": [asdict(s) for s in schedules]}, indent=2
        )
        if create:
            self.store.write_text(names.schedules_key, record)
        else:
            # Schedule state is the one mutable record: retire/rollback flip it.
            self.store.replace(names.schedules_key, record.encode())
