"""`inv tracking-server`: MLflow's tracking server and UI on this machine, in the background.

The project's client is `mlflow-skinny` (the dev group); the server is MLflow's full package,
in its own dependency group, `tracking-server`, of `pyproject.toml`. Both groups are resolved
together into `uv.lock` when the project is locked, so the server is always the client's
version, and a server that cannot be resolved fails `uv lock` (at generation, or at the bump
that changes it), never a user's first start. A plain `uv sync` leaves the group out: about
700 MB that only a tracking-server host needs. The first start installs exactly that locked
group (with its hashes) into `.tracking-server/`, an environment of its own beside the
project's, where no `uv sync` of the project removes it; later starts reuse it, offline.

It serves the project's local store (`mlflow.db`), so the runs logged without a server show
in its UI too. Cloud teams point MLFLOW_TRACKING_URI at their shared server instead.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from {{ cookiecutter.package }}.artifacts.store import build_folder
from {{ cookiecutter.package }}.background import in_use, running, spawn, stop, wait_until_answers
from {{ cookiecutter.package }}.engines.version_env import find_uv, run_uv
from {{ cookiecutter.package }}.errors import UserError
from {{ cookiecutter.package }}.version import PROJECT_ROOT

GROUP = "tracking-server"  # the dependency group of pyproject.toml that holds the server
ENV_DIR = ".tracking-server"  # its environment, in the project's root
LOCKED = "locked-requirements.txt"  # written last inside the environment: it is complete
START_TIMEOUT_S = 120  # a first start creates the store (MLflow's migrations, about 35 s)


@dataclass(frozen=True)
class Server:
    url: str
    pid: int
    log: Path


def locked_requirements(project_root: Path = PROJECT_ROOT) -> str:
    """The server's group exactly as `uv.lock` pins it (versions and hashes): `uv export
    --frozen` reads the lock and resolves nothing."""
    return run_uv(
        f"cannot read the `{GROUP}` group from uv.lock",
        find_uv(), "export", "--frozen", "--only-group", GROUP, "--no-emit-project",
        "--no-header", "--quiet",
        cwd=project_root,
    )  # fmt: skip


def pinned(requirements: str, name: str) -> str:
    """`name==X` as the exported requirements pin it ('' when absent)."""
    for line in requirements.splitlines():
        if line.startswith(f"{name}=="):
            return line.split(";")[0].split()[0]
    return ""


def server_environment(project_root: Path = PROJECT_ROOT) -> Path:
    """The environment holding the locked server (built on first use): its folder. Built
    whole or not at all (`store.build_folder`), as the versions' environments are."""
    requirements = locked_requirements(project_root)

    def complete(folder: Path) -> bool:
        return (folder / LOCKED).is_file() and (folder / LOCKED).read_text() == requirements

    def build(partial: Path) -> None:
        packages = sum(1 for line in requirements.splitlines() if "==" in line)
        print(
            f"installing MLflow's tracking server into {ENV_DIR}/ (once, about 600 MB): "
            f"{pinned(requirements, 'mlflow')} and {packages - 1} more packages, the "
            f"`{GROUP}` group exactly as uv.lock pins it",
            flush=True,
        )
        uv, failure = find_uv(), f"cannot install the `{GROUP}` group into {ENV_DIR}/"
        run_uv(failure, uv, "venv", "--quiet", "--relocatable", "--python", sys.executable,
               str(partial))  # fmt: skip
        listed = partial / "requirements.txt"
        listed.write_text(requirements)
        python = str(partial / "bin" / "python")
        run_uv(failure, uv, "pip", "sync", "--quiet", "--python", python, "--require-hashes",
               str(listed))  # fmt: skip
        (partial / LOCKED).write_text(requirements)
        print(f"installed: {disk_usage(partial) / 1e6:.0f} MB in {ENV_DIR}/", flush=True)

    return build_folder(project_root / ENV_DIR, build, complete)


def disk_usage(folder: Path) -> int:
    return sum(path.lstat().st_size for path in folder.rglob("*") if not path.is_symlink())


def start(home: Path, port: int, host: str = "127.0.0.1") -> Server:
    """Start a server storing runs in `home` (mlflow.db, mlartifacts/) and wait until it
    answers; UserError when it does not."""
    if in_use(host, port):  # said at once: MLflow itself takes seconds to start and fail
        raise UserError(f"cannot start the MLflow server: {host}:{port} is in use (--port)")
    mlflow = server_environment() / "bin" / "mlflow"
    log = home / "mlflow-server.log"
    command = [
        str(mlflow), "server",
        "--host", host, "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
        "--artifacts-destination", str(home / "mlartifacts"),
    ]  # fmt: skip
    # MLflow's job runner (eight more processes, for its GenAI evaluation jobs) serves
    # nothing this project logs
    environment = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    process = spawn(command, log, environment)
    url = f"http://{host}:{port}"
    wait_until_answers(process, f"{url}/health", log, START_TIMEOUT_S, "the MLflow server")
    return Server(url, process.pid, log)


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
