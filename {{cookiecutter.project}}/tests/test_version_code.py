"""A version's code as a released artifact: the wheel built from the committed tree, promotion
by content, and the version's own environment (built with uv) that every local run uses."""

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import git, snapshot

from {{ cookiecutter.package }}.artifacts.code import read_code
from {{ cookiecutter.package }}.artifacts.names import names_for
from {{ cookiecutter.package }}.errors import ReleaseError
from {{ cookiecutter.package }}.release import code_publishing
from {{ cookiecutter.package }}.release.code_publishing import build_wheel, publish_code
from {{ cookiecutter.package }}.release.context import ReleaseContext


def context(cfg, repo: Path, version: str | None = None) -> ReleaseContext:
    return ReleaseContext(cfg=cfg, names=names_for(cfg, version), project_root=repo)


@pytest.mark.heavy
def test_code_comes_from_the_committed_tree_and_never_changes(
    cfg, git_repo: Path, artifact_root: Path
) -> None:
    ctx = context(cfg, git_repo)
    record = publish_code(ctx, git(git_repo, "rev-parse", "HEAD"))
    assert record.git_tree == git(git_repo, "rev-parse", "HEAD^{tree}")
    assert record.wheel_filename.startswith(f"{ctx.names.project.replace('-', '_')}-{cfg.version}")
    assert (artifact_root / record.wheel).is_file()
    assert "kfp==" in (artifact_root / record.requirements).read_text()
    assert read_code(ctx.store, ctx.names) == record

    # Another commit with the same files (a merge commit): the same code, nothing written.
    before = snapshot(artifact_root)
    git(git_repo, "commit", "-q", "--allow-empty", "-m", "Merge develop")
    assert publish_code(ctx, git(git_repo, "rev-parse", "HEAD")) == record
    assert snapshot(artifact_root) == before

    # A README change is no release input: the same version, nothing written.
    (git_repo / "README.md").write_text("changed\n")
    git(git_repo, "commit", "-q", "-am", "docs only")
    assert publish_code(ctx, git(git_repo, "rev-parse", "HEAD")) == record
    assert snapshot(artifact_root) == before

    # Other release inputs under the same version: refused, the store unchanged.
    (git_repo / "pyproject.toml").write_text(
        (git_repo / "pyproject.toml").read_text() + "# tuned\n"
    )
    git(git_repo, "commit", "-q", "-am", "change without a bump")
    with pytest.raises(ReleaseError, match="released code never changes, bump the version"):
        publish_code(ctx, git(git_repo, "rev-parse", "HEAD"))
    assert snapshot(artifact_root) == before


def test_a_dirty_tree_publishes_nothing(cfg, git_repo: Path, artifact_root: Path) -> None:
    (git_repo / "README.md").write_text("uncommitted\n")
    with pytest.raises(ReleaseError, match="working tree is not clean"):
        publish_code(context(cfg, git_repo), git(git_repo, "rev-parse", "HEAD"))
    assert snapshot(artifact_root) == {}


@pytest.mark.heavy
def test_one_tree_gives_one_wheel_whatever_the_commit(cfg, git_repo: Path) -> None:
    ctx = context(cfg, git_repo)
    first = build_wheel(ctx, git(git_repo, "rev-parse", "HEAD"))
    git(git_repo, "commit", "-q", "--allow-empty", "-m", "same files, later commit")
    assert build_wheel(ctx, git(git_repo, "rev-parse", "HEAD")) == first


@pytest.mark.slow
def test_without_the_locked_backend_the_wheel_is_built_in_a_build_environment(
    cfg, git_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As after `uv sync --no-dev`: uv makes a build environment with the newest backend
    `[build-system]` allows. The same wheel, file for file (its bytes may differ: another
    poetry-core may write them)."""
    ctx = context(cfg, git_repo)
    head = git(git_repo, "rev-parse", "HEAD")
    name, locked = build_wheel(ctx, head)
    monkeypatch.setattr(code_publishing, "locked_backend_installed", lambda: False)
    assert code_publishing._backend_options() == []
    isolated_name, isolated = build_wheel(ctx, head)
    assert isolated_name == name
    assert files_of(isolated) == files_of(locked)


def files_of(wheel: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
        return sorted(archive.namelist())


@pytest.mark.heavy
def test_promotion_copies_the_code_released_from_the_same_tree(
    cfg, git_repo: Path, tmp_path: Path
) -> None:
    head = git(git_repo, "rev-parse", "HEAD")
    cfg.env.artifact_root = str(tmp_path / "dev")
    released = publish_code(context(cfg, git_repo), head)
    cfg.env.artifact_root = str(tmp_path / "prod")
    cfg.env.promote_from = str(tmp_path / "dev")
    promoted = publish_code(context(cfg, git_repo), head)
    assert promoted.promoted_from == str(tmp_path / "dev")
    assert (promoted.wheel_sha256, promoted.git_sha) == (released.wheel_sha256, released.git_sha)
    assert (tmp_path / "prod" / promoted.wheel).read_bytes() == (
        tmp_path / "dev" / released.wheel
    ).read_bytes()


@pytest.mark.slow
def test_each_version_runs_in_its_own_environment(cfg, git_repo: Path, artifact_root: Path) -> None:
    ctx = context(cfg, git_repo)
    environments = ctx.environments
    # Before its code is published, the checkout's version runs the checkout's code;
    # any other version cannot run at all.
    assert environments.python_for(ctx.names) == sys.executable
    with pytest.raises(ReleaseError, match="9.9.9 has no published code"):
        environments.python_for(names_for(cfg, "9.9.9"))

    record = publish_code(ctx, git(git_repo, "rev-parse", "HEAD"))
    envs = git_repo / ".version-envs"
    dead = envs / f".{ctx.names.code_env_name(record.digest)}.999999999.partial"
    dead.mkdir(parents=True)  # what a killed build leaves
    python = environments.python_for(ctx.names)
    env = envs / ctx.names.code_env_name(record.digest)
    assert python == str(env / "bin" / "python")
    assert not dead.exists()
    package = ctx.cfg.package
    where = subprocess.run(
        [python, "-c", f"import {package}, {package}.version as v; print({package}.__file__)"],
        cwd=git_repo,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert where.startswith(str(env))  # the wheel's code, not the checkout's src/

    built = (env / "version-code.json").stat().st_mtime_ns
    assert environments.python_for(ctx.names) == python  # reused, not rebuilt
    assert (env / "version-code.json").stat().st_mtime_ns == built
