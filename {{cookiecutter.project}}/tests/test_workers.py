"""Warm workers (`engines.workers`): each released version's runs fork from a process that
has its code and libraries imported, and still run that version's own code, each task in a
process of its own. Real environments built from released wheels, real kfp local runs."""

import json
import os
import re
import signal
import subprocess
import threading
import time
import tomllib
from pathlib import Path

import pytest
from conftest import git, inv_here, make_git_repo
from kfp import compiler, dsl
from omegaconf import DictConfig
from test_tasks import inv

from {{ cookiecutter.package }}.artifacts.names import names_for
from {{ cookiecutter.package }}.config import load_config
from {{ cookiecutter.package }}.engines import worker_homes, workers
from {{ cookiecutter.package }}.engines.local import LocalEngine
from {{ cookiecutter.package }}.errors import ReleaseError
from {{ cookiecutter.package }}.release.code_publishing import publish_code
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.release.preflight import check_config, refusals
from {{ cookiecutter.package }}.version import PROJECT

pytestmark = pytest.mark.slow


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def probe(how: str, package: str) -> str:
    """What runs a task: the version and code it imports, its process, a leaked global."""
    import importlib
    import json
    import os

    if how == "raise":
        raise ValueError("the probe failed on purpose")
    if how == "exit":
        os._exit(3)
    seen_leak = hasattr(json, "_probe_leak")
    json._probe_leak = True  # type: ignore[attr-defined]  # must not reach the next task
    try:
        marker = importlib.import_module(f"{package}.marker").VALUE
    except ImportError:
        marker = "none"
    with open(f"/proc/{os.getppid()}/stat") as run:  # the run's parent: the worker
        worker = int(run.read().rsplit(")", 1)[1].split()[1])
    return json.dumps({"pid": os.getpid(), "worker": worker, "marker": marker, "leak": seen_leak})


@dsl.pipeline(name="probe")
def probe_pipeline(how: str, package: str) -> str:
    return probe(how=how, package=package).output


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("spec") / "probe.yaml"
    compiler.Compiler().compile(probe_pipeline, str(path))
    return path.read_text()


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> tuple[DictConfig, Path]:
    """Versions 0.1.0 and 0.2.0 released from one repository; only 0.2.0 has `marker.py`."""
    root = tmp_path_factory.mktemp("released")
    cfg = load_config("local", [f"env.artifact_root={root / 'artifacts'}"])
    repo = make_git_repo(root / "repo")
    publish_code(context(cfg, repo, "0.1.0"), git(repo, "rev-parse", "HEAD"))
    pyproject = repo / "pyproject.toml"
    current = tomllib.loads(pyproject.read_text())["project"]["version"]
    pyproject.write_text(pyproject.read_text().replace(f'"{current}"', '"0.2.0"', 1))
    (repo / "src" / cfg.package / "marker.py").write_text('VALUE = "0.2.0 code"\n')
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "0.2.0")
    publish_code(context(cfg, repo, "0.2.0"), git(repo, "rev-parse", "HEAD"))
    for version in ("0.1.0", "0.2.0"):  # built here, once: the tests are about workers
        context(cfg, repo, version).environments.python_for(names_for(cfg, version))
    return cfg, repo


def context(cfg: DictConfig, repo: Path, version: str) -> ReleaseContext:
    return ReleaseContext(cfg=cfg, names=names_for(cfg, version), project_root=repo)


def engine(released: tuple[DictConfig, Path], idle_s: float = 60) -> LocalEngine:
    cfg, repo = released
    ctx = context(cfg, repo, "0.1.0")
    return LocalEngine(ctx.store, repo / ".kfp-local", ctx.environments, worker_idle_s=idle_s)


def probe_run(
    released: tuple[DictConfig, Path], spec: str, version: str, how: str = "ok", idle_s: float = 60
) -> dict:
    cfg, repo = released
    names = names_for(cfg, version)
    output = engine(released, idle_s).run(
        names, "training", spec, {"how": how, "package": cfg.package}, 300
    )
    return dict(json.loads(output))


def alive() -> dict[str, int]:
    """The python of each live worker the tests started (every checkout's: the scratch
    repositories' Airflow task commands belong to those) -> its pid."""
    return {w["python"]: w["pid"] for w in workers.workers(everywhere=True)}


@pytest.fixture(autouse=True)
def no_workers_between_tests() -> None:
    workers.stop_workers(everywhere=True)  # the session's folder: only the tests' workers


def test_each_task_is_a_fresh_fork_of_the_versions_worker(released, spec: str) -> None:
    first = probe_run(released, spec, "0.1.0")
    (python, worker), *others = alive().items()
    assert others == [] and "0.1.0" in python
    assert first["worker"] == worker  # task <- run <- worker
    second = probe_run(released, spec, "0.1.0")
    assert alive() == {python: worker}  # the same worker served both
    assert second["pid"] != first["pid"]
    assert first["leak"] is False and second["leak"] is False  # no global reached it


def test_a_crashing_task_fails_its_run_in_one_line_and_the_worker_goes_on(
    released, spec: str
) -> None:
    with pytest.raises(ReleaseError, match="ValueError: the probe failed on purpose") as raised:
        probe_run(released, spec, "0.1.0", how="raise")
    assert "\n" not in str(raised.value)
    exited = f"^{PROJECT}-training 0.1.0 failed: Task 'probe' finished with status FAILURE"
    with pytest.raises(ReleaseError, match=exited):
        probe_run(released, spec, "0.1.0", how="exit")  # os._exit(3) in the task
    worker = set(alive().values())
    assert probe_run(released, spec, "0.1.0")["marker"] == "none"
    assert set(alive().values()) == worker


def test_a_killed_worker_is_replaced_without_an_error(released, spec: str) -> None:
    probe_run(released, spec, "0.1.0")
    (old,) = alive().values()
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: not pid_alive(old))
    assert probe_run(released, spec, "0.1.0")["leak"] is False
    (new,) = alive().values()
    assert new != old


def test_two_versions_workers_each_run_their_own_code(released, spec: str) -> None:
    assert probe_run(released, spec, "0.2.0")["marker"] == "0.2.0 code"
    assert probe_run(released, spec, "0.1.0")["marker"] == "none"
    assert probe_run(released, spec, "0.2.0")["marker"] == "0.2.0 code"
    pythons = sorted(alive())
    assert len(pythons) == 2 and "0.1.0" in pythons[0] and "0.2.0" in pythons[1]


def test_concurrent_runs_of_one_version_start_one_worker(released, spec: str) -> None:
    results: list[dict] = []
    threads = [
        threading.Thread(target=lambda: results.append(probe_run(released, spec, "0.1.0")))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2 and len(alive()) == 1
    assert results[0]["worker"] == results[1]["worker"] == next(iter(alive().values()))


def test_an_idle_worker_exits_and_the_next_run_starts_one(released, spec: str) -> None:
    probe_run(released, spec, "0.1.0", idle_s=1)
    (first,) = alive().values()
    wait_until(lambda: not pid_alive(first))
    assert alive() == {}
    probe_run(released, spec, "0.1.0", idle_s=1)
    (second,) = alive().values()
    assert second != first


def test_a_rebuilt_environment_gets_a_new_worker(released, spec: str) -> None:
    probe_run(released, spec, "0.1.0")
    (python, first), *_ = alive().items()
    ready = Path(python).parent.parent / "version-code.json"
    ready.write_text(ready.read_text())  # what a rebuild in place leaves: a new file
    probe_run(released, spec, "0.1.0")
    wait_until(lambda: not pid_alive(first))  # the stale worker retired
    (second,) = alive().values()
    assert second != first


def test_a_module_runs_in_the_worker_with_its_output_captured_apart(released) -> None:
    """What `inv compare` scores a version with: `python -m` its module, in its worker."""
    cfg, repo = released
    python = context(cfg, repo, "0.2.0").environments.python_for(names_for(cfg, "0.2.0"))
    env = dict(os.environ)
    site, tool = workers.module_script("site"), workers.module_script("json.tool")
    ran = workers.capture_in_worker(python, cfg.package, site, env, str(repo), 60)
    assert ran.returncode == 0 and ran.stderr == ""
    assert str(Path(python).parent.parent) in ran.stdout  # the version's environment
    failed = workers.capture_in_worker(python, cfg.package, tool, env, str(repo), 60)
    assert failed.returncode == 1 and failed.stdout == ""
    assert "Expecting value" in failed.stderr
    assert list(alive()) == [python]


def test_an_airflow_task_command_runs_its_step_in_the_versions_worker(released) -> None:
    """`python -m <package>.engines.workers MODULE` (what a local DAG's bash task runs):
    MODULE runs in the version's worker, and its output and exit code are the command's."""
    cfg, repo = released
    python = context(cfg, repo, "0.2.0").environments.python_for(names_for(cfg, "0.2.0"))
    command = [python, "-m", f"{cfg.package}.engines.workers"]

    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, *args], capture_output=True, text=True, cwd=repo, timeout=300,
            input="[]", env={**os.environ, **env},
        )  # fmt: skip

    listed = run("site")
    assert listed.returncode == 0 and str(Path(python).parent.parent) in listed.stdout
    (worker,) = alive().values()
    failed = run("json.tool")  # a run in a worker reads no stdin: "[]" never reaches it
    assert failed.returncode == 1 and failed.stdout == "" and "Expecting value" in failed.stderr
    assert list(alive().values()) == [worker]  # the same worker ran both
    fresh = run("json.tool", WARM_WORKER_IDLE_SECONDS="0")  # off: a new interpreter
    assert fresh.returncode == 0 and fresh.stdout.strip() == "[]"


def test_the_release_checks_its_config_with_the_versions_code_in_its_worker(released) -> None:
    cfg, repo = released
    root = cfg.env.artifact_root
    bad = load_config("local", [f"env.artifact_root={root}", "model.learning_rate=-1"])
    refused = "^invalid configuration: model sklearn.ensemble.HistGradientBoostingRegressor: "
    # A dry run finds the same refusal in this process, and leaves no worker behind.
    assert any(re.match(refused, r) for r in refusals(context(bad, repo, "0.1.0"), dry_run=True))
    assert alive() == {}
    with pytest.raises(ReleaseError, match=refused + ".*learning_rate"):
        check_config(context(bad, repo, "0.1.0"))
    assert len(alive()) == 1  # checked there, not by importing scikit-learn here
    check_config(context(cfg, repo, "0.1.0"))


def test_preparing_a_version_starts_its_worker_in_the_background(released, spec: str) -> None:
    cfg, _ = released
    started = time.monotonic()
    engine(released).prepare(names_for(cfg, "0.1.0"))  # what the release's code step calls
    assert time.monotonic() - started < 5  # it does not wait for the imports
    wait_until(lambda: len(alive()) == 1, timeout_s=120)
    (pid,) = alive().values()
    probe_run(released, spec, "0.1.0")
    assert list(alive().values()) == [pid]


def test_workers_are_off_with_idle_zero(released, spec: str) -> None:
    result = probe_run(released, spec, "0.1.0", idle_s=0)
    assert alive() == {} and result["leak"] is False


def test_the_workers_task_lists_and_stops_them(released, spec: str) -> None:
    probe_run(released, spec, "0.1.0")
    (pid,) = alive().values()
    time.sleep(1.2)
    for _ in range(2):  # looking at a worker does not make it busy: its idle time goes on
        (status,) = workers.workers()
        assert status["idle_s"] >= 1.0, status
    listed = inv("workers")  # a new process: it finds the worker by its socket
    assert listed.returncode == 0 and f"pid {pid}  " in listed.stdout
    stopped = inv("workers", "--stop")
    assert stopped.returncode == 0 and stopped.stdout == "stopped 1 worker\n"
    wait_until(lambda: not pid_alive(pid))
    assert not list(worker_homes.runtime_dir().rglob("*.sock"))
    assert inv("workers").stdout.startswith("no workers")


def test_each_checkout_lists_and_stops_its_own_workers(released, spec: str, monkeypatch) -> None:
    """Two checkouts of one project on one machine (another clone, a CI job): `inv workers
    --stop` in one leaves the other's workers, and their runs, alone; --all sees both."""
    probe_run(released, spec, "0.1.0")
    (ours,) = [w["pid"] for w in workers.workers()]
    monkeypatch.setattr(worker_homes, "checkout", lambda: Path("/elsewhere/another-clone"))
    assert workers.workers() == [] and inv_here("workers")[1].startswith("no workers")
    probe_run(released, spec, "0.1.0")  # the other checkout's own worker
    (theirs,) = [w["pid"] for w in workers.workers()]
    assert theirs != ours
    assert inv_here("workers", "--stop")[1] == "stopped 1 worker\n"
    wait_until(lambda: not pid_alive(theirs))
    assert pid_alive(ours)
    monkeypatch.undo()
    assert [w["pid"] for w in workers.workers()] == [ours]
    assert [w["pid"] for w in workers.workers(everywhere=True)] == [ours]
    assert inv_here("workers", "--stop", "--all")[1] == "stopped 1 worker\n"
    wait_until(lambda: not pid_alive(ours))


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited


def wait_until(condition, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
