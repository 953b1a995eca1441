"""The image step's pure parts; building and pushing for real is tested by the template."""

from importlib import metadata
from pathlib import Path

import pytest

from {{ cookiecutter.package }}.artifacts.names import names_for
from {{ cookiecutter.package }}.errors import ReleaseError
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.release.image import build_command, find_builder
from {{ cookiecutter.package }}.release.requirements import pinned_requirements
from {{ cookiecutter.package }}.version import DISTRIBUTION


def test_the_lock_pins_the_tested_dependency_closure() -> None:
    pinned = dict(line.split("==") for line in pinned_requirements(DISTRIBUTION))
    assert pinned["kfp"] == metadata.version("kfp")
    assert pinned["omegaconf"] == metadata.version("omegaconf")  # through hydra-core
    assert DISTRIBUTION not in pinned
    assert "pytest" not in pinned  # dev tools stay out of the image


def test_build_command_tags_and_labels_the_version(cfg, tmp_path: Path) -> None:
    cfg.env.registry = "eu-docker.pkg.dev/p/r"
    cfg.env.base_image = "python:3.11-slim"
    ctx = ReleaseContext(cfg=cfg, names=names_for(cfg), project_root=tmp_path)
    command = build_command(ctx, "buildah", "f" * 40, "e" * 40)
    image = f"eu-docker.pkg.dev/p/r/{cfg.project}"
    assert command[:5] == ["buildah", "build", "-f", "Dockerfile", "--layers"]
    assert "BASE_IMAGE=python:3.11-slim" in command
    assert f"org.opencontainers.image.version={cfg.version}" in command
    assert f"org.opencontainers.image.revision={'f' * 40}" in command
    assert f"git.tree={'e' * 40}" in command  # what promotion across merge commits compares
    assert command[-5:] == ["-t", f"{image}:{cfg.version}", "-t", f"{image}:git-ffffffffffff", "."]


def test_builder_choice() -> None:
    assert find_builder("none") is None
    with pytest.raises(ReleaseError, match="unknown builder 'kaniko'"):
        find_builder("kaniko")
