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

import importlib.util
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
from {{ cookiecutter.package }}.engines.workers import (
    WorkerRun,
    hosts_a_worker,
    run_in_worker,
    warm_up,
)
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
if isinstance(output, list):  # a fanned-out run: each shard's result, a line each
    output = "\\n".join(map(str, output))
open(result, "w").write(json.dumps({"output": str(output)}))
"""

# In a warm worker (`engines.workers`) the runner has the version's libraries imported
# already: each task becomes a fork of it running kfp's executor, instead of a new
# interpreter importing them again. kfp builds a lightweight component's command as
# `sh -c SCRIPT SOURCE ARGS...` (SCRIPT writes SOURCE to ephemeral_component.py and runs
# kfp.dsl.executor_main on it); any other command is left to kfp.
FORK_TASKS = """
import os, sys, tempfile
from kfp.dsl import executor_main
from kfp.local import subprocess_task_handler as handler

spawn = handler.run_local_subprocess


def fork_task(full_command, env_vars=None):
    script = next((i for i, part in enumerate(full_command) if "executor_main" in part), None)
    if script is None or "pip install" in full_command[script] or script + 1 >= len(full_command):
        return spawn(full_command, env_vars)
    source, args = full_command[script + 1], full_command[script + 2:]
    module = os.path.join(tempfile.mkdtemp(), "ephemeral_component.py")
    with open(module, "w") as handle:
        handle.write(source)
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:

        def task():
            os.close(read_end)
            os.dup2(write_end, 1)
            os.dup2(write_end, 2)
            os.environ.update(env_vars or {})
            os.environ["_KFP_RUNTIME"] = "true"
            sys.argv = ["executor_main", "--component_module_path", module, *args]
            executor_main.executor_main()

        exit_after(task)  # the worker's: ends the child with the task's exit code
    os.close(write_end)
    with os.fdopen(read_end, errors="replace") as output:
        for line in output:
            print(line, end="")
    print()
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


handler.run_local_subprocess = fork_task
"""


# kfp's dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER, built so that no template engine
# renders it (this module must not import kfp: see RUNNER).
SCHEDULE_TIME_PLACEHOLDER = "{" + "{$.pipeline_job_schedule_time_utc}" + "}"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STARTED = re.compile(r"Executing task '([\w-]+)'")
_FINISHED = re.compile(r"Task '([\w-]+)' finished with status (\w+)")
_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit)): (.+)$")


def without_schedule_time(spec: str) -> str:
    """`spec` with kfp's schedule time placeholder as an empty value: kfp's local runner
    (2.17) reads every `$.` placeholder of a task's inputs as an artifact reference and
    fails on this one. A local run has no schedule time: its interval is given, or the
    clock's (`artifacts.intervals`)."""
    return spec.replace(SCHEDULE_TIME_PLACEHOLDER, "")


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

    def follow(self, process: subprocess.Popen | WorkerRun, deadline: float) -> None:
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
        worker_idle_s: float = 0,
    ) -> None:
        self.store = store
        self.pipeline_root = pipeline_root
        self.environments = environments
        self.verbose = verbose  # the pipeline's own log on the terminal, not only in a file
        # Runs of a released version go through its warm worker (`engines.workers`), which
        # exits after this long without one; 0: every run starts a new interpreter.
        self.worker_idle_s = worker_idle_s
        self.package = __name__.split(".")[0]

    @classmethod
    def from_config(
        cls,
        cfg: Any,
        store: ArtifactStore,
        project_root: Path,
        environments: VersionEnvironments,
    ) -> LocalEngine:
        """Runs under `<project>/.kfp-local`; `env.verbose` shows kfp's whole output;
        `env.worker_idle_seconds` keeps each version's worker warm (0: no workers)."""
        verbose = bool(cfg.env.get("verbose", False))
        idle_s = float(cfg.env.get("worker_idle_seconds", 0))
        return cls(store, project_root / ".kfp-local", environments, verbose, idle_s)

    def check(self) -> None:
        # Found, not imported: importing kfp costs seconds, and the runs import it themselves.
        if importlib.util.find_spec("kfp") is None:
            raise ReleaseError("kfp local execution is unavailable: kfp is not installed")

    def prepare(self, names: ReleaseNames) -> str:
        """The version's environment (built if need be), its worker starting meanwhile."""
        python = self.environments.python_for(names)
        warm_up(python, self.package, self.worker_idle_s)
        return f"runs with {python}"

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
            spec_path.write_text(without_schedule_time(spec))
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
                process = self._start(command, scratch, environment)
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
        error = _ANSI.sub("", str(result.get("error", "it ended without a result")))
        cause = progress.failure() or f": {error}"
        raise ReleaseError(f"{failed}{cause} (log: {log_path})")

    def _start(
        self, command: list[str], cwd: str, environment: dict[str, str]
    ) -> subprocess.Popen | WorkerRun:
        """The runner's process: a fork of the version's warm worker, or a new interpreter
        (workers off, or the checkout's own interpreter)."""
        python = command[0]
        if self.worker_idle_s > 0 and hosts_a_worker(python):
            return run_in_worker(
                python,
                self.package,
                FORK_TASKS + RUNNER,
                command[3:],
                environment,
                cwd,
                self.worker_idle_s,
            )
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )

    def register(self, names: ReleaseNames, workflow: Workflow, spec: str) -> str:
        # Locally the compiled spec in the store is the registered pipeline version.
        return names.uri(names.workflow_key(workflow))

    def address(self, names: ReleaseNames, workflow: Workflow) -> str:
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

    def details(self, names: ReleaseNames) -> str:
        return ""

    def holdings(self, names: ReleaseNames) -> list[str]:
        # Its workflows and schedules are records in the store, kept for `inv versions`; its
        # environment is retention's to remove.
        return []

    def forget(self, names: ReleaseNames, address: str) -> None:
        raise ReleaseError(f"the local engine holds nothing of {names.version} at {address}")

    def _save(self, names: ReleaseNames, schedules: list[Schedule], create: bool) -> None:
        record = json.dumps(
            {"version": names.version, "schedules": [asdict(s) for s in schedules]}, indent=2
        )
        if create:
            self.store.write_text(names.schedules_key, record)
        else:
            # Schedule state is the one mutable record: retire/rollback flip it.
            self.store.replace(names.schedules_key, record.encode())
