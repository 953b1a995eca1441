"""Experiments: an Optuna search driven by Hydra, and MLflow tracking against a real
`mlflow server` (SQLite backend) on loopback."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from conftest import SMALL, free_port, git, inv_here

from {{ cookiecutter.package }} import tracking_server
from {{ cookiecutter.package }}.artifacts import models
from {{ cookiecutter.package }}.artifacts.names import names_for
from {{ cookiecutter.package }}.artifacts.tracking import CLIENT_SETTINGS, PARENT_TAG, Tracker
from {{ cookiecutter.package }}.config import load_config
from {{ cookiecutter.package }}.errors import UserError
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.release.plan import release
from {{ cookiecutter.package }}.version import PROJECT_ROOT

TRAIN = [sys.executable, "-m", "{{ cookiecutter.package }}.train"]
FAST = ["data.n_trips=1200"]
SEARCH = ["--multirun", "hparams_search=gradient_boosting_optuna", *FAST]


def train(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`inv train` as it runs it: Hydra writes outputs/ and multirun/ under `cwd`."""
    return subprocess.run(
        [*TRAIN, *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


@contextmanager
def mlflow_server(home: Path) -> Iterator[tracking_server.Server]:
    """A real MLflow tracking server on loopback, SQLite-backed, as `inv tracking-server`
    starts it (MLflow's full package, run by uv as a tool)."""
    server = tracking_server.start(home, free_port())
    try:
        yield server
    finally:
        tracking_server.stop(server.pid)


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as server:
        yield server.url


def release_with_tracking(tmp_path: Path, repo: Path, monkeypatch) -> ReleaseContext:
    """A local release of this project with tracking on, in the scratch repository."""
    for name in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{name}_NAME", "T")
        monkeypatch.setenv(f"GIT_{name}_EMAIL", "t@example.com")
    cfg = load_config(
        "local", [f"env.artifact_root={tmp_path / 'artifacts'}", *SMALL, "tracking=mlflow"]
    )
    cfg.env.builder = "none"  # the scratch repo has no Dockerfile
    return ReleaseContext(cfg=cfg, names=names_for(cfg), project_root=repo)


def test_the_search_space_is_read_from_hydra_sweep_syntax() -> None:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    # here, not at the top: where `hydra_plugins` sorts among the imports depends on the
    # package's name
    from hydra_plugins.{{ cookiecutter.package }}_optuna import search_space

    space, fixed = search_space(
        [
            "a=choice(100, 200)",
            "b=range(2, 10)",
            "c=tag(log, interval(0.02, 0.3))",
            "d=interval(1, 5)",
            "e=range(0.1, 0.5, 0.1)",
            "model=ridge",
            "b=4",
        ]
    )
    assert space == {
        "a": CategoricalDistribution([100, 200]),
        "c": FloatDistribution(0.02, 0.3, log=True),
        "d": FloatDistribution(1.0, 5.0),  # Hydra's interval() is a float range
        "e": FloatDistribution(0.1, 0.4, step=0.1),  # range() leaves out its stop
    }
    assert fixed == {"model": "ridge", "b": "4"}  # a fixed value given later wins
    assert search_space(["b=range(2, 10)"])[0] == {"b": IntDistribution(2, 9)}


def test_a_tracking_uri_is_shown_without_its_credentials() -> None:
    tracker = Tracker("https://me:s3cret@mlflow.example.com/path", "taxi")
    assert tracker.shown == "https://***@mlflow.example.com/path"
    assert Tracker("http://127.0.0.1:5000", "taxi").shown == "http://127.0.0.1:5000"


def test_experiments_from_an_unreachable_server_is_one_error_line(monkeypatch) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    for name, value in CLIENT_SETTINGS.items():  # what the client sets: undone afterwards
        monkeypatch.setenv(name, value)
    code, _, err = inv_here("experiments", "-o", "tracking=mlflow")
    assert code == 1
    (line,) = err.strip().splitlines()
    host_port = url.removeprefix("http://")
    assert line.startswith(f"error: cannot read runs from {url}: no server answers at {host_port}")


def test_a_second_tracking_server_is_refused_while_one_runs(tmp_path: Path) -> None:
    running = subprocess.Popen(["sleep", "60"], start_new_session=True)  # stands for one
    try:
        tracking_server.pid_file(tmp_path).write_text(str(running.pid))
        with pytest.raises(UserError, match="a tracking server is already running"):
            tracking_server.start_in(tmp_path, free_port())
        assert tracking_server.stop_in(tmp_path)  # --stop ends it and forgets it
        assert not tracking_server.pid_file(tmp_path).exists()
        assert running.poll() is not None
    finally:
        running.kill()


def test_a_tracking_server_on_a_port_in_use_is_one_error_at_once(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            UserError, match=rf"^cannot start the MLflow server: 127.0.0.1:{port} is in use"
        ):
            tracking_server.start(tmp_path, port)
    assert not any(tmp_path.iterdir())  # nothing started, no log
    assert not tracking_server.in_use("127.0.0.1", port)  # closed: free again


@pytest.mark.slow
def test_an_optuna_search_prints_the_command_that_reproduces_its_best_trial(
    tmp_path: Path,
) -> None:
    result = train(tmp_path, *SEARCH, "hydra.sweeper.n_trials=4")
    assert result.returncode == 0, result.stderr
    trials = [json.loads(p.read_text()) for p in tmp_path.glob("multirun/*/*/*/metadata.json")]
    assert len(trials) == 4
    assert len({tuple(t["overrides"]) for t in trials}) == 4  # four different trials
    (results_file,) = tmp_path.glob("multirun/*/*/optimization_results.yaml")
    results = yaml.safe_load(results_file.read_text())
    assert results["best_value"] == min(t["metrics"]["mae"] for t in trials)

    (line,) = [x for x in result.stdout.splitlines() if x.startswith("reproduce: ")]
    command = shlex.split(line.removeprefix("reproduce: "))
    assert command[:2] == ["inv", "train"] and set(command[2::2]) == {"-o"}
    assert "data.n_trips=1200" in command  # the search's own overrides come along
    rerun = train(tmp_path, *command[3::2])
    assert rerun.returncode == 0, rerun.stderr
    (single,) = tmp_path.glob("outputs/*/*/metadata.json")
    assert json.loads(single.read_text())["metrics"]["mae"] == results["best_value"]


@pytest.mark.slow
def test_releases_and_searches_are_tracked_on_a_tracking_server(
    tracking_uri: str, tmp_path: Path, git_repo: Path, monkeypatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    ctx = release_with_tracking(tmp_path, git_repo, monkeypatch)
    release(ctx)
    tracker = Tracker(tracking_uri, str(ctx.cfg.project))
    (run,) = [r for r in tracker.runs() if r.kind == "release"]
    metadata = models.read_metadata(ctx.store, ctx.names)
    assert run.name == f"release {ctx.names.version} (local)"
    assert run.tags["version"] == ctx.names.version
    assert run.tags["git_sha"] == metadata["git_sha"] == git(git_repo, "rev-parse", "HEAD")
    assert run.tags["model_uri"] == metadata["model"]  # a reference: the store keeps the model
    assert run.tags["model_sha256"] == metadata["model_sha256"]
    assert run.tags["data.source"] == "synthetic"
    assert run.metrics["mae"] == metadata["metrics"]["mae"]
    assert run.params["model._target_"] == "sklearn.linear_model.Ridge"
    assert run.params["data.n_trips"] == "600"
    assert tracker.client().list_artifacts(run.run_id) == []  # not copied: not configured

    def tracked(*args: str) -> subprocess.CompletedProcess[str]:
        return train(tmp_path, *args, "tracking=mlflow", MLFLOW_TRACKING_URI=tracking_uri)

    copied = tracked(*FAST, "tracking.copy_model=true")
    assert copied.returncode == 0, copied.stderr
    (experiment,) = [r for r in tracker.runs() if r.kind == "experiment"]
    artifacts = tracker.client().list_artifacts(experiment.run_id, "model")
    assert [a.path for a in artifacts] == ["model/model.pkl"]

    search = tracked(*SEARCH, "hydra.sweeper.n_trials=2")
    assert search.returncode == 0, search.stderr
    runs = tracker.runs()
    (sweep,) = [r for r in runs if r.kind == "sweep"]
    trials = [r for r in runs if r.kind == "trial"]
    assert len(trials) == 2 and {t.tags[PARENT_TAG] for t in trials} == {sweep.run_id}
    assert sweep.metrics["best_mae"] == min(t.metrics["mae"] for t in trials)
    assert sweep.params["sweeper.n_trials"] == "2"
    assert sweep.params["sweeper.params.model.max_depth"] == "range(2, 10)"

    listed = subprocess.run(
        [sys.executable, "-m", "invoke", "experiments", "-o", "tracking=mlflow"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MLFLOW_TRACKING_URI": tracking_uri},
    )
    assert listed.returncode == 0, listed.stderr
    # the release was scored on 120 trips, the trainings on 240: two rankings, not one
    assert listed.stdout.startswith("4 experiments on 2 different test sets")
    assert f"release {ctx.names.version} (local)" in listed.stdout
    assert listed.stdout.count("trial ") == 2


@pytest.mark.slow
def test_a_tracking_server_stopped_mid_release_costs_one_warning_line(
    tmp_path: Path, git_repo: Path, monkeypatch, capsys
) -> None:
    home = tmp_path / "mlflow"
    home.mkdir()
    with mlflow_server(home) as server:
        url = server.url
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        ctx = release_with_tracking(tmp_path, git_repo, monkeypatch)
        engine_run = ctx.engine.run

        def stop_the_server_then_train(*args, **kwargs):
            tracking_server.stop(server.pid)  # down while the model trains, before it is logged
            return engine_run(*args, **kwargs)

        monkeypatch.setattr(ctx.engine, "run", stop_the_server_then_train)
        record = release(ctx)
    assert record["version"] == ctx.names.version  # released all the same
    warnings = [x for x in capsys.readouterr().err.splitlines() if x.startswith("warning:")]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"warning: tracking to {url} failed")


@pytest.mark.slow
def test_with_tracking_off_neither_mlflow_nor_optuna_is_imported(
    tmp_path: Path, git_repo: Path
) -> None:
    """Training and a whole release (its pipeline tasks too) with both libraries made
    unimportable: anything that imports them fails."""
    shadow = tmp_path / "shadow"
    for name in ("mlflow", "optuna"):
        (shadow / name).mkdir(parents=True)
        (shadow / name / "__init__.py").write_text(f"raise ImportError('{name} imported')\n")
    env = {
        "PYTHONPATH": str(shadow),
        "GIT_AUTHOR_NAME": "T",
        "GIT_AUTHOR_EMAIL": "t@e.com",
        "GIT_COMMITTER_NAME": "T",
        "GIT_COMMITTER_EMAIL": "t@e.com",
    }
    trained = train(tmp_path, *FAST, **env)
    assert trained.returncode == 0, trained.stderr
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from {{ cookiecutter.package }}.config import load_config\n"
        "from {{ cookiecutter.package }}.artifacts.names import names_for\n"
        "from {{ cookiecutter.package }}.release.context import ReleaseContext\n"
        "from {{ cookiecutter.package }}.release.plan import release\n"
        f"cfg = load_config('local', ['env.artifact_root={tmp_path / 'artifacts'}', *{SMALL}])\n"
        "cfg.env.builder = 'none'\n"
        f"repo = Path({str(git_repo)!r})\n"
        "release(ReleaseContext(cfg=cfg, names=names_for(cfg), project_root=repo))\n"
        "assert not {'mlflow', 'optuna'} & set(sys.modules), 'imported'\n"
    )
    released = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **env},
    )
    assert released.returncode == 0, released.stderr[-3000:]
    assert (tmp_path / "artifacts/releases").is_dir()
