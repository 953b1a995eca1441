"""Rendering helpers shared by the fast and the slow tier."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cookiecutter.main import cookiecutter

# These tests import pandas, scikit-learn and kfp in hundreds of processes, from environments
# they build themselves. Python caches compiled modules by default; a machine that turns that
# off (PYTHONDONTWRITEBYTECODE, as this build machine does) makes every one of those imports
# compile from source again, about twice as slow. The environments are throwaway: cache.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
# Releases, servers, Airflow's scheduler and the generated suite's xdist workers share the
# cores here: OpenMP's and BLAS's threads, one per core in each process, would spin against
# each other (a 0.6 s fit took 12 s on a busy 2-core machine). One thread each.
os.environ.setdefault("OMP_NUM_THREADS", "1")

TEMPLATE = Path(__file__).resolve().parents[1]
DEFAULTS = json.loads((TEMPLATE / "cookiecutter.json").read_text())
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Template Tests", "GIT_AUTHOR_EMAIL": "tests@example.com",
    "GIT_COMMITTER_NAME": "Template Tests", "GIT_COMMITTER_EMAIL": "tests@example.com",
}


def render(output_dir: Path, **answers: Any) -> Path:
    """Generate a project with cookiecutter's API, hooks included; return its directory."""
    return Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(output_dir),
                             extra_context=answers))


# `make test` runs the modules on two pytest-xdist workers, a module per worker at a time
# (`--dist loadfile`: a module's generated project is made once), in collection order
# (`--no-loadscope-reorder`; xdist would hand out the modules with most tests first).
# Handing out the longest modules first lets both workers finish together.
LONGEST_FIRST = ("test_generated_project.py", "test_readme.py", "test_release_e2e.py",
                 "test_airflow_e2e.py", "test_promotion_e2e.py", "test_render.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: a module's own tests keep their order


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """On CI every part is installed: a skip there is a failure, never a silent pass."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped on CI, where nothing may be skipped: {report.longrepr}"


@pytest.fixture
def git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in GIT_IDENTITY.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="session", autouse=True)
def warm_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Generated projects keep a warm worker per released version (`inv workers`): the
    ones these tests start live in a folder of this session's, and are stopped at its end."""
    folder = tmp_path_factory.mktemp("workers")
    before = os.environ.get("WARM_WORKERS_DIR")
    os.environ["WARM_WORKERS_DIR"] = str(folder)
    yield folder
    for path in folder.rglob("*.sock"):  # what `inv workers --stop --all` sends each of them
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as worker:
            try:
                worker.settimeout(5)
                worker.connect(str(path))
                worker.send(b'{"op": "stop"}')
                worker.recv(4096)
            except OSError:
                pass
    if before is None:
        del os.environ["WARM_WORKERS_DIR"]
    else:
        os.environ["WARM_WORKERS_DIR"] = before
