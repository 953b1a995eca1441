"""Workflow engines: where a version's compiled pipelines run, are registered and scheduled.

One module per engine, chosen by name in `conf/env/*.yaml` (`engine: local | kfp |
airflow | vertex`): `local` runs kfp's local execution in the version's own environment and
keeps schedules as records in the artifact store; `kfp` talks to Kubeflow Pipelines;
`airflow` writes a DAG per version and drives Airflow's REST API; `vertex` keeps templates
in Artifact Registry and runs and schedules them on Vertex AI Pipelines. All take the same
compiled pipeline spec (Airflow reads its parameters from it) and run the same steps
(`pipelines.steps`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from {{ cookiecutter.package }}.artifacts.names import ReleaseNames, Workflow
from {{ cookiecutter.package }}.artifacts.store import ArtifactStore
from {{ cookiecutter.package }}.engines.version_env import VersionEnvironments
from {{ cookiecutter.package }}.errors import ReleaseError


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


def five_field_cron(kfp_cron: str) -> str:
    """KFP's cron has a seconds field first; Airflow's and Vertex AI's have five fields."""
    fields = kfp_cron.split()
    return " ".join(fields[1:] if len(fields) == 6 else fields)


class Engine(Protocol):
    @classmethod
    def from_config(
        cls, cfg: Any, store: ArtifactStore, project_root: Path, environments: VersionEnvironments
    ) -> Engine:
        """The engine as `env` configures it; credentials come from the environment."""

    def check(self) -> None: ...

    def prepare(self, names: ReleaseNames) -> str:
        """Make the version's code runnable here (its environment or image); describe it."""

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

    def address(self, names: ReleaseNames, workflow: Workflow) -> str:
        """Where the engine keeps (or will keep) the version's `workflow`, for people."""

    def schedules(self, names: ReleaseNames) -> list[Schedule]: ...

    def create_schedules(self, names: ReleaseNames, schedules: list[Schedule]) -> None: ...

    def set_enabled(self, names: ReleaseNames, enabled: bool) -> None: ...

    def holdings(self, names: ReleaseNames) -> list[str]:
        """What the engine keeps of the version outside the artifact store (DAG files and
        DAGs, pipeline versions, recurring runs), as addresses, in the order `forget`
        removes them: what runs it first (a schedule), what it runs last."""

    def forget(self, names: ReleaseNames, address: str) -> None:
        """Remove one of the version's `holdings`; a no-op when it is gone already."""

    def details(self, names: ReleaseNames) -> str:
        """What the engine adds to the version's row of `inv versions` (e.g. Vertex AI's
        templates and newest runs); "" when it has nothing to add."""


# Each engine's module and class, imported only when chosen.
ENGINES = {
    "local": ("{{ cookiecutter.package }}.engines.local", "LocalEngine"),
    "kfp": ("{{ cookiecutter.package }}.engines.kubeflow", "KfpEngine"),
    "airflow": ("{{ cookiecutter.package }}.engines.airflow.engine", "AirflowEngine"),
    "vertex": ("{{ cookiecutter.package }}.engines.vertex", "VertexEngine"),
}


def create_engine(
    cfg: Any, store: ArtifactStore, project_root: Path, environments: VersionEnvironments
) -> Engine:
    """The engine named by `env.engine`, built by its own `from_config`."""
    name = str(cfg.env.engine)
    if name not in ENGINES:
        raise ReleaseError(f"unknown engine {name!r}: use one of {', '.join(ENGINES)}")
    module, engine = ENGINES[name]
    found: Any = getattr(importlib.import_module(module), engine)
    return found.from_config(cfg, store, project_root, environments)  # type: ignore[no-any-return]
