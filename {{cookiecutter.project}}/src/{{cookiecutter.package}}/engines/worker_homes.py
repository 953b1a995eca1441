"""Where each checkout's warm workers live on this machine (`engines.workers`): a folder per
checkout under one runtime folder, and in it each worker's socket, start lock and log,
named by a hash of its environment's path. Listing and stopping look here, so a checkout
acts on its own workers and leaves another clone's, or a CI job's, alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from {{ cookiecutter.package }}.engines.version_env import READY
from {{ cookiecutter.package }}.version import PROJECT, PROJECT_ROOT, pyproject_path

# Where the workers' sockets, locks and logs are; the tests point it at their own folder.
# Each checkout has a folder of its own in it, and a socket's name is a hash of its
# environment's path.
DIR_VARIABLE = "WARM_WORKERS_DIR"


def runtime_root() -> Path:
    """The folder of every checkout's workers. A short path: a socket's is limited to
    about 100 characters."""
    configured = os.environ.get(DIR_VARIABLE)
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / f"{PROJECT}-workers-{os.getuid()}"


def checkout() -> Path:
    """The checkout this process belongs to: the project's root when it runs from one; in
    a version's environment (an Airflow task's command), the checkout that built it
    (`<checkout>/.version-envs/<version>`)."""
    if pyproject_path() is not None:
        return PROJECT_ROOT
    return Path(sys.prefix).resolve().parent.parent


def runtime_dir() -> Path:
    """This checkout's workers: `inv workers` lists and stops these, not another clone's
    or a CI job's of the same project on the same machine."""
    return runtime_root() / hashlib.sha256(str(checkout()).encode()).hexdigest()[:12]


def sockets(everywhere: bool) -> list[Path]:
    folder = runtime_root() if everywhere else runtime_dir()
    return sorted(folder.rglob("*.sock")) if folder.is_dir() else []


@dataclass(frozen=True)
class WorkerHome:
    """The files of the worker of one version's environment."""

    environment: Path

    @property
    def key(self) -> str:
        return hashlib.sha256(str(self.environment.resolve()).encode()).hexdigest()[:16]

    def file(self, suffix: str) -> Path:
        return runtime_dir() / f"{self.key}.{suffix}"

    @property
    def socket_path(self) -> Path:
        return self.file("sock")

    def identity(self) -> str:
        """The environment as built: a rebuild (same path, new files) changes it."""
        ready = (self.environment / READY).stat()
        return f"{ready.st_ino}-{ready.st_mtime_ns}"


def hosts_a_worker(python: str) -> bool:
    """Whether `python` is the interpreter of a released version's environment."""
    return (Path(python).parent.parent / READY).is_file()


def ask(path: Path, message: dict[str, Any]) -> dict[str, Any] | None:
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    connection.settimeout(5)
    try:
        connection.connect(str(path))
        socket.send_fds(connection, [json.dumps(message).encode()], [])
        return dict(json.loads(connection.recv(4096)))
    except (OSError, ValueError):
        return None
    finally:
        connection.close()
