"""What the serving tests share (`test_serving.py`: each version's own server;
`test_router.py`: the router and its shadow mirror): real uvicorn servers on loopback, and
two versions released once for the run. A pytest plugin (`conftest.pytest_plugins`): its
fixtures reach every test module, its helpers are imported by name."""

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from conftest import built_once, free_port, release_model

from {{ cookiecutter.package }}.artifacts.names import ReleaseNames
from {{ cookiecutter.package }}.serving import router
from {{ cookiecutter.package }}.serving.app import create_app, serve_command

# One client for the module's requests: `httpx.get` and `httpx.post` make a client, and its
# SSL context, per call (28 ms, about 1.4 s of the fast tier). No keep-alive: each request
# opens its own connection, as those calls do, so a stopped server never leaves a stale one.
HTTP = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0))

TRIP = {"trip_id": "t1", "distance_km": 5.0, "pickup_hour": 8, "weekday": 1, "area_cluster": 0}


class Servers:
    """Real uvicorn servers on loopback ports, each in a thread; stoppable one by one."""

    def __init__(self) -> None:
        self.running: dict[str, tuple[uvicorn.Server, threading.Thread]] = {}
        self.urls: dict[str, str] = {}
        self.apps: dict[str, Any] = {}

    def start(self, name: str, app) -> str:
        return self.start_all({name: app})[name]

    def start_all(self, apps: dict[str, Any]) -> dict[str, str]:
        """Start every server, then wait for each: their start-ups overlap."""
        for name, app in apps.items():
            port = free_port()
            server = uvicorn.Server(
                uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
            )
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            self.running[name] = (server, thread)
            self.urls[name] = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        for name in apps:
            while not self.healthy(self.urls[name]):
                assert time.monotonic() < deadline, f"{name} did not start"
                time.sleep(0.02)
        return {name: self.urls[name] for name in apps}

    @staticmethod
    def healthy(url: str) -> bool:
        try:
            return HTTP.get(f"{url}/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def stop(self, *names: str) -> None:
        """Ask each server to exit, then wait for all: their shutdowns overlap."""
        stopping = [self.running.pop(name) for name in names or list(self.running)]
        for server, _ in stopping:
            server.should_exit = True
        for _, thread in stopping:
            thread.join(timeout=10)


def release_both(root: Path, scratch: Path) -> Path:
    """1.0.0 (a linear model) and 2.0.0 (boosted trees), released into `root`."""
    release_model(root, "1.0.0", {"_target_": "sklearn.linear_model.Ridge"}, scratch)
    release_model(
        root,
        "2.0.0",
        {"_target_": "sklearn.ensemble.HistGradientBoostingRegressor", "max_iter": 50},
        scratch,
    )
    return root


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both versions released once for the run (2.5 s; every test process runs tests of
    this module); tests that write use a copy."""
    scratch = built_once(tmp_path_factory, "released", lambda f: release_both(f / "artifacts", f))
    return scratch / "artifacts"


@pytest.fixture
def released_root(tmp_path: Path, released: Path) -> Path:
    """A store of this test's own (traffic records, predictions), with both versions."""
    return Path(shutil.copytree(released, tmp_path / "artifacts"))


@pytest.fixture
def running() -> Iterator[Servers]:
    servers = Servers()
    yield servers
    servers.stop()


def start_versions(root: Path, running: Servers) -> dict[str, str]:
    return running.start_all(
        {v: create_app(ReleaseNames("taxi", v, v, str(root))) for v in ("1.0.0", "2.0.0")}
    )


@pytest.fixture
def servers(released_root: Path, running: Servers) -> dict[str, str]:
    """Each released version's own server, for a test that stops or changes one."""
    return start_versions(released_root, running)


@pytest.fixture(scope="module")
def shared_servers(released: Path) -> Iterator[dict[str, str]]:
    """Each released version's own server, shared by the tests that only send requests."""
    running = Servers()
    yield start_versions(released, running)
    running.stop()


def cluster_trips(clusters) -> list[dict]:
    return [{**TRIP, "trip_id": f"t{c}", "user_cluster": c} for c in clusters]


def start_router(
    released_root: Path, servers: dict[str, str], running: Servers, **shadow: Any
) -> str:
    root = str(released_root)
    # refresh_s=0: every request reads the assignment, so the test sees changes at once.
    app = router.create_router(
        root, router.upstreams("http://{deployment}", servers, root), 0.0, **shadow
    )
    running.apps["router"] = app
    return running.start("router", app)


def serve_in_process(released_root: Path, version: str, port: int) -> subprocess.Popen:
    """A version's server as the image starts it (`python -m ...serving.app`)."""
    names = ReleaseNames("taxi", version, version, str(released_root))
    command, environment = serve_command(sys.executable, names, port=port)
    return subprocess.Popen(
        command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def wait_until_healthy(url: str, process: subprocess.Popen) -> float:
    deadline = time.monotonic() + 60
    while True:
        try:
            if HTTP.get(f"{url}/healthz", timeout=1).status_code == 200:
                return time.monotonic()
        except httpx.TransportError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
