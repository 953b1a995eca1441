"""`inv up` and `inv down`: every live version's server and the router, on this machine.

`inv up` starts a server for each live version (released here, its schedules enabled), with
that version's own environment (`engines.version_env`), on `serving.local.first_port` and the
ports after it, oldest version first; then the router on `serving.local.router_port`, with
each of them as its upstream. It waits until each answers `/healthz`. Before it starts
anything it refuses, in one line: a live version without its environment, a port that is
taken, servers it started that still run. A start that fails stops what was started.

What it started is recorded in `.serving/up.json` (name, port, pid and the process's start
time, log): `inv down` stops exactly that, and `inv up --status` shows it. The same processes
are Prometheus's targets in `.serving/prometheus-targets.json` (deploy/prometheus/). A recorded pid
whose process is not the one started (the system reused it) is never signalled.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from packaging.version import Version

from {{ cookiecutter.package }}.background import (
    in_use,
    spawn,
    started_at,
    stop,
    wait_until_answers,
)
from {{ cookiecutter.package }}.errors import ReleaseError
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.release.traffic_moves import live_versions
from {{ cookiecutter.package }}.serving.app import serve_command

FOLDER = ".serving"  # in the project's root; ignored by git
ROUTER = "router"
HOST = "127.0.0.1"
START_TIMEOUT_S = 120  # a version's first start may build its environment and warm its model


@dataclass(frozen=True)
class Started:
    name: str  # a version, or ROUTER
    port: int
    pid: int
    started_at: int  # the process's start time (`background.started_at`)
    log: str

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def alive(self) -> bool:
        return started_at(self.pid) == self.started_at


def record_path(project_root: Path) -> Path:
    return project_root / FOLDER / "up.json"


def targets_path(project_root: Path) -> Path:
    """What deploy/prometheus/prometheus.yml scrapes (its `file_sd_configs`)."""
    return project_root / FOLDER / "prometheus-targets.json"


def prometheus_targets(started: list[Started]) -> list[dict[str, object]]:
    """Prometheus's file-based service discovery of what `inv up` started: one group per
    process, labelled `service` (router or version); the metrics carry the version."""
    return [
        {
            "targets": [f"{HOST}:{process.port}"],
            "labels": {"service": "router" if process.name == ROUTER else "version"},
        }
        for process in started
    ]


def recorded(project_root: Path) -> list[Started]:
    path = record_path(project_root)
    if not path.is_file():
        return []
    return [Started(**entry) for entry in json.loads(path.read_text())["started"]]


def ports_of(ctx: ReleaseContext) -> dict[str, int]:
    """Each live version's port, oldest first from `serving.local.first_port`, and the
    router's."""
    versions = sorted(live_versions(ctx), key=Version)
    if not versions:
        raise ReleaseError(f"no live version on {ctx.env}: release one first (`inv release`)")
    first, router = int(ctx.cfg.serving.local.first_port), int(ctx.cfg.serving.local.router_port)
    ports = {version: first + index for index, version in enumerate(versions)}
    if router in ports.values():
        raise ReleaseError(
            f"serving.local.router_port {router} is among the versions' ports "
            f"{first}-{first + len(versions) - 1}: set another"
        )
    return {**ports, ROUTER: router}


def up(ctx: ReleaseContext, overrides: list[str]) -> list[Started]:
    """Start every live version's server and the router; see the module's docstring."""
    root = ctx.project_root
    still = [process for process in recorded(root) if process.alive()]
    if still:
        names = ", ".join(f"{p.name} (pid {p.pid})" for p in still)
        raise ReleaseError(f"already up: {names}; `inv down` first (`inv up --status` shows them)")
    ports = ports_of(ctx)
    versions = [name for name in ports if name != ROUTER]
    # Every environment first (built from the stored wheel if need be): a version that
    # cannot have one is refused before anything starts.
    pythons = {version: ctx.environments.python_for(ctx.names_of(version)) for version in versions}
    for name, port in ports.items():
        if in_use(HOST, port):
            setting = "router_port" if name == ROUTER else "first_port"
            raise ReleaseError(
                f"port {port} (for {name}) is taken: stop what listens there, or set "
                f"serving.local.{setting} (-o serving.local.{setting}=...)"
            )
    logs = root / FOLDER / "logs"
    started: list[Started] = []
    try:
        for version in versions:
            command, environment = serve_command(
                pythons[version], ctx.names_of(version), HOST, ports[version]
            )
            started.append(_start(version, ports[version], command, environment, logs, root))
        upstreams = [f"--upstream={v}=http://{HOST}:{ports[v]}" for v in versions]
        router = [
            sys.executable, "-m", "invoke", "serve-router", "--port", str(ports[ROUTER]),
            "--env", ctx.env, *upstreams, *(f"--override={o}" for o in overrides),
        ]  # fmt: skip
        started.append(_start(ROUTER, ports[ROUTER], router, dict(os.environ), logs, root))
    except BaseException:
        for process in started:
            stop(process.pid)
        record_path(root).unlink(missing_ok=True)
        targets_path(root).unlink(missing_ok=True)
        raise
    return started


def _start(
    name: str, port: int, command: list[str], env: dict[str, str], logs: Path, root: Path
) -> Started:
    log = logs / f"{name}.log"
    process = spawn(command, log, env, cwd=root)
    entry = Started(name, port, process.pid, started_at(process.pid) or 0, str(log))
    _record(root, [*recorded(root), entry])  # recorded at once: `inv down` can stop it
    what = "the router" if name == ROUTER else f"the server of {name}"
    wait_until_answers(process, f"{entry.url}/healthz", log, START_TIMEOUT_S, what)
    return entry


def _record(root: Path, started: list[Started]) -> None:
    path = record_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"started": [asdict(s) for s in started]}, indent=2))
    # Written whole and renamed into place: Prometheus never reads half a file.
    scratch = targets_path(root).with_suffix(".tmp")
    scratch.write_text(json.dumps(prometheus_targets(started), indent=2))
    scratch.replace(targets_path(root))


def down(project_root: Path) -> list[str]:
    """Stop what `inv up` started (the router first, so no request meets a stopped version);
    one line each."""
    lines = []
    for process in sorted(recorded(project_root), key=lambda p: p.name != ROUTER):
        if process.alive():
            stop(process.pid)
            lines.append(f"stopped {process.name} (pid {process.pid}, port {process.port})")
        else:
            lines.append(f"{process.name} (pid {process.pid}) had ended already")
    record_path(project_root).unlink(missing_ok=True)
    targets_path(project_root).unlink(missing_ok=True)
    return lines or ["nothing is up: `inv up` starts the live versions and the router"]


def status(project_root: Path) -> list[str]:
    """One line per process `inv up` started: where it is, and whether it answers."""
    lines = []
    for process in recorded(project_root):
        if not process.alive():
            state = "ended"
        else:
            try:
                urllib.request.urlopen(f"{process.url}/healthz", timeout=2)
                state = "answers"
            except OSError:
                state = "running, not answering"
        lines.append(f"{process.name:<10} {process.url:<24} pid {process.pid:<8} {state}")
    return lines or ["nothing is up: `inv up` starts the live versions and the router"]
