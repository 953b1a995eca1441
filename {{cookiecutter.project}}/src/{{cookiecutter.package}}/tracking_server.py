"""`inv tracking-server`: MLflow's tracking server and UI on this machine, in the background.

The project's client is `mlflow-skinny`; the server is MLflow's full package, run by uv as
a tool at the client's version (`uv tool run --from mlflow==X`): a service the project
talks to, not a library it imports (its dependencies would otherwise pin the project's).
It serves the project's local store (`mlflow.db`), so the runs logged without a server
show in its UI too. Cloud teams point MLFLOW_TRACKING_URI at their shared server instead.
"""

from __future__ import annotations

import importlib.metadata
import os
import signal
import socket
import subprocess
import time
import urllib.request
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from {{ cookiecutter.package }}.errors import UserError

START_TIMEOUT_S = 300  # the first start installs MLflow (about 700 MB) and creates the store


@dataclass(frozen=True)
class Server:
    url: str
    pid: int
    log: Path


def start(home: Path, port: int, host: str = "127.0.0.1") -> Server:
    """Start a server storing runs in `home` (mlflow.db, mlartifacts/) and wait until it
    answers; UserError when it does not."""
    if in_use(host, port):  # said at once: MLflow itself takes seconds to start and fail
        raise UserError(f"cannot start the MLflow server: {host}:{port} is in use (--port)")
    from uv import find_uv_bin

    version = importlib.metadata.version("mlflow-skinny")
    log = home / "mlflow-server.log"
    command = [
        find_uv_bin(), "tool", "run", "--from", f"mlflow=={version}", "mlflow", "server",
        "--host", host, "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
        "--artifacts-destination", str(home / "mlartifacts"),
    ]  # fmt: skip
    # MLflow's job runner (eight more processes, for its GenAI evaluation jobs) serves
    # nothing this project logs
    environment = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with log.open("w") as out:
        process = subprocess.Popen(
            command,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: it outlives the command, and
        )  # stop() ends it with its workers
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            answered = True
        except OSError:
            answered = False
        ended = process.poll() is not None  # answered all the same: another server's port
        if answered and not ended:
            return Server(url, process.pid, log)
        if ended or time.monotonic() > deadline:
            stop(process.pid)
            last = log.read_text().strip().splitlines()[-1:] or ["no output"]
            raise UserError(f"the MLflow server did not start (see {log}): {last[0]}")
        time.sleep(0.5)


def stop(pid: int) -> bool:
    """End the server started as `pid` and its workers; False when it was not running."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it when it is our child
        if not running(pid):
            return True
        time.sleep(0.2)
    os.killpg(pid, signal.SIGKILL)
    return True


def in_use(host: str, port: int) -> bool:
    """Whether a server listens on host:port (bound as the server binds: a port a closed
    connection still holds, TIME_WAIT, is free)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def running(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def pid_file(home: Path) -> Path:
    return home / "mlflow-server.pid"


def start_in(home: Path, port: int) -> Server:
    """`inv tracking-server`: one server per project, its pid kept for `--stop`."""
    pid_path = pid_file(home)
    if pid_path.exists() and running(int(pid_path.read_text())):
        raise UserError(
            f"a tracking server is already running (pid {pid_path.read_text()}): "
            "`inv tracking-server --stop` first"
        )
    server = start(home, port)
    pid_path.write_text(str(server.pid))
    return server


def stop_in(home: Path) -> bool:
    pid_path = pid_file(home)
    if not pid_path.exists():
        return False
    stopped = stop(int(pid_path.read_text()))
    pid_path.unlink()
    return stopped
