"""Warm workers: a released version's code and libraries, imported once and reused locally.

A worker is a process started with a version's own interpreter (its environment under
`.version-envs/`) that has imported the version's package and the heavy libraries its steps
use (pandas, pyarrow, scikit-learn, kfp). Each run it is asked for is a child forked from
it, and each pipeline task of that run a child forked from the run: a task still runs the
version's own code in a process of its own (a crash, a leaked global or a changed working
directory ends with it), without starting Python and importing those libraries again.
kfp's local runner still runs the compiled pipeline spec; only how a task's process starts
changes (see `engines.local.RUNNER`).

Lifecycle: started on first use, one per environment (a lock file serialises starts, so two
`inv` commands at once share one); it exits after `idle_s` seconds without a run. A worker
that was killed leaves a socket nobody answers, and a worker whose environment was rebuilt
since it started answers "stale": either way the next run starts a new one. `inv workers`
lists them, `inv workers --stop` ends them. Only environments built from a released wheel
get a worker: the checkout's own interpreter runs code that is being edited, so its runs
start fresh.

The worker's own program is `engines.worker_process`: the standard library only, handed to
the version's interpreter as source, so that any version's environment can host it. Where
workers live (sockets, locks, logs; a folder per checkout) is `engines.worker_homes`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from {{ cookiecutter.package }}.background import started_at
from {{ cookiecutter.package }}.engines.worker_homes import (
    WorkerHome,
    ask,
    hosts_a_worker,
    runtime_dir,
    sockets,
)
from {{ cookiecutter.package }}.errors import ReleaseError

START_TIMEOUT_S = 180
# What the steps import, whatever the version (a name a version lacks is skipped).
PRELOAD = (
    "pandas",
    "pyarrow.parquet",
    "pandera.pandas",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "sklearn.metrics",
    "sklearn.model_selection",
    "kfp.local",
    "kfp.dsl.executor_main",
)
# pipelines.step_lineage brings the OpenLineage client (0.4 s), for the runs that send events.
PACKAGE_MODULES = (
    "pipelines.step_table",
    "pipelines.steps",
    "pipelines.step_lineage",
    "ml.fitting",
    "ml.evaluate",
)

# The worker's program: a module of its own, run as text by the version's interpreter.
WORKER = (Path(__file__).parent / "worker_process.py").read_text()


# How long a worker started by `python -m ...engines.workers` (Airflow's local tasks) stays
# warm; 0 runs each task in a new interpreter. Local runs read `env.worker_idle_seconds`.
IDLE_VARIABLE = "WARM_WORKER_IDLE_SECONDS"
DEFAULT_IDLE_S = 300.0


class WorkerRun:
    """A run in a worker, used as `subprocess.Popen` is: its output on `stdout`, `wait()`,
    `kill()`. Closing the connection makes the worker kill the run."""

    def __init__(self, connection: socket.socket, stdout: IO[str], pid: int) -> None:
        self.connection, self.stdout, self.pid = connection, stdout, pid
        self.returncode: int | None = None

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.connection.settimeout(timeout)
            try:
                answer = self.connection.recv(4096)
            except TimeoutError:
                raise subprocess.TimeoutExpired(f"run {self.pid}", timeout or 0) from None
            self.returncode = int(json.loads(answer)["exit"]) if answer else -signal.SIGKILL
            self.connection.close()
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            self.connection.close()
            self.returncode = -signal.SIGKILL

    def poll(self) -> int | None:
        return self.returncode


def run_in_worker(
    python: str,
    package: str,
    script: str,
    argv: list[str],
    env: dict[str, str],
    cwd: str,
    idle_s: float,
    stderr: int | None = None,
) -> WorkerRun:
    """Run `python -c script *argv` (with `env`, in `cwd`) in the worker of `python`'s
    environment, starting one if none answers. Its stdout and stderr come out of the run's
    `stdout`, unless `stderr` is a file descriptor of its own."""
    home = WorkerHome(Path(python).parent.parent)
    request = {
        "op": "run",
        "identity": home.identity(),
        "script": script,
        "argv": argv,
        "env": env,
        "cwd": cwd,
    }
    for _ in range(3):  # a worker may be stale, or die between connecting and running
        connection = _connect(home) or _start(home, python, package, idle_s)
        read_end, write_end = os.pipe()
        try:
            fds = [write_end] if stderr is None else [write_end, stderr]
            socket.send_fds(connection, [json.dumps(request).encode()], fds)
            answer = json.loads(connection.recv(4096) or b"{}")
        except OSError:
            answer = {}
        finally:
            os.close(write_end)
        if "pid" in answer:
            return WorkerRun(connection, os.fdopen(read_end, errors="replace"), answer["pid"])
        os.close(read_end)
        connection.close()
    raise ReleaseError(
        f"the worker of {home.environment} does not take runs (log: {home.file('log')})"
    )


def capture_in_worker(
    python: str, package: str, script: str, env: dict[str, str], cwd: str, idle_s: float
) -> subprocess.CompletedProcess[str]:
    """`python -c script` in the worker of `python`'s environment, its stdout and stderr
    captured apart: what `subprocess.run(..., capture_output=True)` gives."""
    err_read, err_write = os.pipe()
    try:
        run = run_in_worker(python, package, script, [], env, cwd, idle_s, stderr=err_write)
    finally:
        os.close(err_write)
    with os.fdopen(err_read, errors="replace") as errors:
        # Read both pipes to their end without either filling up: stderr on a thread.
        collected: list[str] = []
        reader = threading.Thread(target=lambda: collected.append(errors.read()))
        reader.start()
        out = run.stdout.read()
        reader.join()
    code = run.wait()
    return subprocess.CompletedProcess([python, "-c", script], code, out, "".join(collected))


def module_script(module: str) -> str:
    """The script that runs `python -m module`."""
    return f"import runpy\nrunpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"


def _connect(home: WorkerHome) -> socket.socket | None:
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        connection.connect(str(home.socket_path))
    except OSError:  # no socket, or nobody behind it (a killed worker)
        connection.close()
        return None
    return connection


_started: list[subprocess.Popen] = []  # kept, so that their exit is reaped quietly


def warm_up(python: str, package: str, idle_s: float) -> None:
    """Start the worker of `python`'s environment if none is alive or starting, and return
    at once: its imports overlap whatever the command does before its first run."""
    if idle_s > 0 and hosts_a_worker(python):
        launched = _launch(WorkerHome(Path(python).parent.parent), python, package, idle_s)
        if isinstance(launched, socket.socket):
            launched.close()


def _start(home: WorkerHome, python: str, package: str, idle_s: float) -> socket.socket:
    """A connection to the environment's worker, once it listens (started if need be)."""
    launched = _launch(home, python, package, idle_s)
    if isinstance(launched, socket.socket):
        return launched
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        # Read before connecting: one that exited because another worker listens leaves
        # that worker to connect to.
        starting = _running(launched)
        connection = _connect(home)
        if connection is not None:
            return connection
        if not starting:
            break
        time.sleep(0.02)
    raise ReleaseError(f"the worker of {home.environment} did not start (log: {home.file('log')})")


def _launch(home: WorkerHome, python: str, package: str, idle_s: float) -> socket.socket | int:
    """Under the start lock: the live worker's connection, or the pid of the one starting
    (started here when there is none), so that concurrent commands start one worker."""
    runtime_dir().mkdir(mode=0o700, parents=True, exist_ok=True)
    with _locked(home.file("lock")):
        connection = _connect(home)
        if connection is not None:
            return connection
        return _starting(home) or _spawn(home, python, package, idle_s)


def _spawn(home: WorkerHome, python: str, package: str, idle_s: float) -> int:
    with home.file("log").open("a") as log:
        preload = [*PRELOAD, *(f"{package}.{module}" for module in PACKAGE_MODULES)]
        process = subprocess.Popen(
            [python, "-c", WORKER, str(home.socket_path), str(idle_s), home.identity()] + preload,
            cwd=home.environment,
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not stopped by a Ctrl-C meant for the command
        )
    _started.append(process)
    home.file("sock.starting").write_text(str(process.pid))  # removed once it listens
    return process.pid


def _starting(home: WorkerHome) -> int | None:
    """The pid of this environment's worker while it imports (alive, not yet listening)."""
    try:
        pid = int(home.file("sock.starting").read_text())
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if str(home.socket_path).encode() in command and _running(pid) else None


def _running(pid: int) -> bool:
    """Alive, and not a zombie waiting to be reaped."""
    return started_at(pid) is not None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# -- listing and stopping ------------------------------------------------------------------


def workers(everywhere: bool = False) -> list[dict[str, Any]]:
    """This checkout's live workers (`everywhere`: every checkout's of this project on the
    machine): pid, interpreter, runs, idle."""
    found = []
    for path in sockets(everywhere):
        status = ask(path, {"op": "status"})
        if status is None:
            path.unlink(missing_ok=True)  # a killed worker's socket
        else:
            found.append(status)
    return found


def stop_workers(everywhere: bool = False) -> list[int]:
    """End this checkout's workers (`everywhere`: every checkout's), their runs too; the
    pids that were stopped."""
    stopped = []
    for path in sockets(everywhere):
        answer = ask(path, {"op": "stop"})
        if answer is not None:
            stopped.append(int(answer["stopped"]))
    for process in list(_started):  # reap ours: the ones just stopped, and any gone since
        if process.pid in stopped:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        if process.poll() is not None:
            _started.remove(process)
    return stopped


def main(argv: list[str]) -> int:
    """`python -m {{ cookiecutter.package }}.engines.workers MODULE [ARGS...]`: what
    `python -m MODULE ARGS` does, run in the warm worker of this interpreter's environment.
    Its stdout and stderr are this process's, and so is its exit code; ending this process
    ends the run. Airflow's local (bash) tasks start their steps this way. An interpreter that
    hosts no worker (a checkout), or WARM_WORKER_IDLE_SECONDS=0, runs MODULE itself."""
    module, *args = argv
    idle_s = float(os.environ.get(IDLE_VARIABLE, DEFAULT_IDLE_S))
    if idle_s <= 0 or not hosts_a_worker(sys.executable):
        os.execv(sys.executable, [sys.executable, "-m", module, *args])
    package = "{{ cookiecutter.package }}"  # not __name__: run with -m, that is __main__
    environment = dict(os.environ)
    run = run_in_worker(
        sys.executable, package, module_script(module), args, environment, os.getcwd(), idle_s,
        stderr=sys.stderr.fileno(),
    )  # fmt: skip
    for line in run.stdout:
        sys.stdout.write(line)
    code = run.wait()
    return code if code >= 0 else 128 - code  # killed by a signal: as a shell reports it


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
