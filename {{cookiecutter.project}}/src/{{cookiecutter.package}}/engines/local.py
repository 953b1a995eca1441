"""The local engine: kfp's local execution of a version's compiled pipeline, on this machine.

Each run is a child process started by the interpreter of the version's own environment
(see `version_env`): kfp's subprocess runner starts every task with that interpreter, so
every task runs the version's own code, whatever the current checkout holds. Schedules are
records in the artifact store; `inv run-scheduled` fires the enabled ones once.

kfp's executor output (about 200 lines per run) goes to a log file under
`.kfp-local/logs/`; the terminal gets one line per task state, and a failure is one error
naming the task, the exception and the log (`-o env.verbose=true` shows everything).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from {{ cookiecutter.package }}.artifacts.names import ReleaseNames, Workflow
from {{ cookiecutter.package }}.artifacts.store import ArtifactStore
from {{ cookiecutter.package }}.engines import Schedule
from {{ cookiecutter.package }}.engines.version_env import VersionEnvironments
from {{ cookiecutter.package }}.errors import ReleaseError
from {{ cookiecutter.package }}.progress import Activity

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


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STARTED = re.compile(r"Executing task '([\w-]+)'")
_FINISHED = re.compile(r"Task '([\w-]+)' finished with status (\w+)")
_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit)): (.+)$")


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")


class _Progress:
    """Reads a run's output: all of it into the log file, one line per task state to the
    terminal (everything with `verbose`), and what failed, for a one-line error."""

    def __init__(self, log: IO[str], verbose: bool) -> None:
        self.log, self.verbose = log, verbose
        self.running: dict[str, Activity] = {}
        self.failed_task = ""
        self.exception = ""

    def follow(self, process: subprocess.Popen, deadline: float) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            self.log.write(raw)
            line = _ANSI.sub("", raw).rstrip()
            if self.verbose:
                print(line, flush=True)
            if (started := _STARTED.search(line)) and not self.verbose:
                self.running[started.group(1)] = Activity(f"  task {started.group(1)}")
            elif finished := _FINISHED.search(line):
                task, status = finished.groups()
                if status != "SUCCESS":
                    self.failed_task = task
                if task in self.running:
                    self.running.pop(task).done(status.lower())
            elif exception := _EXCEPTION.match(line.strip()):
                self.exception = f"{exception.group(1).rsplit('.', 1)[-1]}: {exception.group(2)}"
            if time.monotonic() > deadline:
                raise TimeoutError
        process.wait(timeout=max(1.0, deadline - time.monotonic()))

    def stop(self) -> None:
        """End the display of tasks whose end the output never told (a killed runner)."""
        for task in list(self.running):
            self.running.pop(task).done("stopped")

    def failure(self) -> str:
        """` in task T: Error: message`, as much of it as the output told; "" if nothing."""
        task = f" in task {self.failed_task}" if self.failed_task else ""
        return f"{task}: {_ANSI.sub('', self.exception)}" if self.exception else task


class LocalEngine:
    def __init__(
        self,
        store: ArtifactStore,
        pipeline_root: Path,
        environments: VersionEnvironments,
        verbose: bool = False,
    ) -> None:
        self.store = store
        self.pipeline_root = pipeline_root
        self.environments = environments
        self.verbose = verbose  # the pipeline's own log on the terminal, not only in a file

    @classmethod
    def from_config(
        cls,
        cfg: Any,
        store: ArtifactStore,
        project_root: Path,
        environments: VersionEnvironments,
    ) -> LocalEngine:
        """Runs under `<project>/.kfp-local`; `env.verbose` shows kfp's whole output."""
        verbose = bool(cfg.env.get("verbose", False))
        return cls(store, project_root / ".kfp-local", environments, verbose)

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
        pipeline = names.pipeline_name(workflow)
        log_path = self.pipeline_root / "logs" / f"{pipeline}-{names.version}-{_stamp()}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        failed = f"{pipeline} {names.version} failed"
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
            environment["PYTHONUNBUFFERED"] = "1"
            with log_path.open("w") as log:
                progress = _Progress(log, self.verbose)
                process = subprocess.Popen(
                    command,
                    cwd=scratch,
                    env=environment,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    errors="replace",
                )
                try:
                    progress.follow(process, time.monotonic() + timeout_s)
                except TimeoutError:
                    process.kill()
                    process.wait()
                    raise ReleaseError(
                        f"{failed}: no result after {timeout_s} s (log: {log_path})"
                    ) from None
                finally:
                    progress.stop()
            result = json.loads(result_path.read_text()) if result_path.is_file() else {}
        if "output" in result:
            return str(result["output"])
        cause = progress.failure() or f": {result.get('error', 'it ended without a result')}"
        raise ReleaseError(f"{failed}{cause} (log: {log_path})")

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
