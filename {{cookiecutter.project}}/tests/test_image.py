"""The image step's pure parts; building and pushing for real is tested by the template."""

from importlib import metadata
from pathlib import Path

import pytest

from {{ cookiecutter.package }}.artifacts.names import names_for
from {{ cookiecutter.package }}.errors import ReleaseError
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.release.image import build_command, find_builder
from {{ cookiecutter.package }}.release.requirements import pinned_requirements
from {{ cookiecutter.package }}.version import PROJECT


def test_the_lock_pins_the_tested_dependency_closure() -> None:
    pinned = dict(line.split("==") for line in pinned_requirements(PROJECT))
    assert pinned["kfp"] == metadata.version("kfp")
    assert pinned["omegaconf"] == metadata.version("omegaconf")  # through hydra-core
    assert PROJECT not in pinned
    assert "pytest" not in pinned  # dev tools stay out of the image


def test_build_command_tags_and_labels_the_version(cfg, tmp_path: Path) -> None:
    cfg.env.registry = "eu-docker.pkg.dev/p/r"
    cfg.env.base_image = "python:3.11-slim"
    ctx = ReleaseContext(cfg=cfg, names=names_for(cfg), project_root=tmp_path)
    command = build_command(ctx, "buildah", "f" * 40, "e" * 40, "d" * 64)
    image = f"eu-docker.pkg.dev/p/r/{cfg.project}"
    assert command[:5] == ["buildah", "build", "-f", "Dockerfile", "--layers"]
    assert "BASE_IMAGE=python:3.11-slim" in command
    assert f"org.opencontainers.image.version={cfg.version}" in command
    assert f"org.opencontainers.image.revision={'f' * 40}" in command
    assert f"git.tree={'e' * 40}" in command
    assert f"release.inputs={'d' * 64}" in command  # what promotion across merges compares
    assert command[-5:] == ["-t", f"{image}:{cfg.version}", "-t", f"{image}:git-ffffffffffff", "."]


def test_builder_choice() -> None:
    assert find_builder("none") is None
    with pytest.raises(ReleaseError, match="unknown builder 'kaniko'"):
        find_builder("kaniko")


def test_without_a_builder_the_plan_says_skipped_and_a_dry_build_shows_the_commands(
    cfg, git_repo: Path, capsys
) -> None:
    from {{ cookiecutter.package }}.release.image import build
    from {{ cookiecutter.package }}.release.plan import plan

    cfg.env.builder = "none"
    cfg.env.registry = "eu-docker.pkg.dev/p/r"
    ctx = ReleaseContext(cfg=cfg, names=names_for(cfg), project_root=git_repo)
    (image,) = [r for r in plan(ctx) if r.step == "image"]
    assert "skipped" in image.line() and "IMAGE_BUILDER=none" in image.line()

    assert build(ctx, dry_run=True) == f"eu-docker.pkg.dev/p/r/{cfg.project}:{cfg.version}"
    out = capsys.readouterr().out
    assert "IMAGE_BUILDER=none" in out
    assert "$ docker build -f Dockerfile" in out
    assert f"$ docker push eu-docker.pkg.dev/p/r/{cfg.project}:{cfg.version}" in out
    for lock in ("requirements.lock", "requirements-build.lock"):
        assert not (git_repo / lock).exists()  # a dry run writes nothing
