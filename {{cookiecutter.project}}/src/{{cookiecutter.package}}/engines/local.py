"""The local engine: kfp's local execution of a version's compiled pipeline, on this machine.

Each run is a child process started by the interpreter of the version's own environment
(see `version_env`): kfp's subprocess runner starts every task with that interpreter, so
every task runs the version's own code, whatever the current checkout holds. Schedules are
records in the artifact store; `inv run-scheduled` fires the enabled ones once.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from {{ cookiecutter.package }}.artifacts.names import ReleaseNames, Workflow
from {{ cookiecutter.package }}.artifacts.store import ArtifactStore
from {{ cookiecutter.package }}.engines import Schedule
from {{ cookiecutter.package }}.engines.version_env import VersionEnvironments
from {{ cookiecutter.package }}.errors import ReleaseError

# Runs in the version's interpreter and uses only kfp, which every version's lock pins: it
# must not import this package, whose code may differ from the version being run.
RUNNER = """
import json, sys
import kfp.local
from kfp import components

spec, arguments, pipeline_root, result = sys.argv[1:5]
kfp.local.init(
    runner=kfp.local.SubprocessRunner(use_venv=False),
    pipeline_root=pipeline_root,
    raise_on_error=True,
)
pipeline = components.load_component_from_file(spec)
try:
    output = pipeline(**json.loads(arguments)).output
except RuntimeError as error:
    open(result, "w").write(json.dumps({"error": str(error)}))
    sys.exit(1)
open(result, "w").write(json.dumps({"output": str(output)}))
"""


class LocalEngine:
    def __init__(
        self, store: ArtifactStore, pipeline_root: Path, environments: VersionEnvironments
    ) -> None:
        self.store = store
        self.pipeline_root = pipeline_root
        self.environments = environments

    def check(self) -> None:
        try:
            import kfp.local  # noqa: F401
        except ImportError as error:
            raise ReleaseError(f"kfp local execution is unavailable: {error}") from error

    def prepare(self, names: ReleaseNames) -> str:
        return f"runs with {self.environments.python_for(names)}"

    def run(
        self,
        names: ReleaseNames,
        workflow: Workflow,
        spec: str,
        arguments: dict[str, Any],
        timeout_s: int,
    ) -> str:
        python = self.environments.python_for(names)
        self.pipeline_root.mkdir(parents=True, exist_ok=True)
        failed = f"{names.pipeline_name(workflow)} {names.version} failed"
        with tempfile.TemporaryDirectory() as scratch:
            spec_path, result_path = Path(scratch) / f"{workflow}.yaml", Path(scratch) / "result"
            spec_path.write_text(spec)
            command = [
                python,
                "-c",
                RUNNER,
                str(spec_path),
                json.dumps(arguments),
                str(self.pipeline_root.resolve()),
                str(result_path),
            ]
            # The version's environment alone decides what is imported: no PYTHONPATH, and a
            # working directory where no project source lies.
            environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            # kfp's runner makes a temporary folder per task and leaves it: keep them all in
            # this run's scratch folder, which goes away with the run.
            environment["TMPDIR"] = scratch
            try:
                subprocess.run(command, cwd=scratch, env=environment, timeout=timeout_s)
            except subprocess.TimeoutExpired:
                raise ReleaseError(f"{failed}: no result after {timeout_s} s") from None
            if not result_path.is_file():
                raise ReleaseError(f"{failed}: the run ended without a result (see above)")
            result = json.loads(result_path.read_text())
        if "error" in result:
            raise ReleaseError(f"{failed}: {result['error']}")
        return str(result["output"])

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
