"""Slow tier: `inv build` with a real builder (buildah) and a real registry on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import parts
from tests.project import Project

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with parts.registry(tmp_path_factory.mktemp("registry")) as address:
        yield address


@pytest.fixture(scope="module")
def base_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    cache = Path(os.environ.get("ML_TEMPLATE_CACHE", tmp_path_factory.mktemp("cache")))
    cache.mkdir(parents=True, exist_ok=True)
    return parts.python_base_image(cache)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return Project.create(tmp_path_factory.mktemp("image"))


def build_args(registry: str, base_image: str) -> list[str]:
    return ["build", "-o", f"env.registry={registry}", "-o", "env.insecure_registry=true",
            "-o", f"env.base_image={base_image}", "-o", "env.builder=buildah"]


def skopeo(*args: str) -> dict:
    result = subprocess.run(["skopeo", *args, "--tls-verify=false"], capture_output=True,
                            text=True, check=True)
    return json.loads(result.stdout)


def test_build_push_reuse_refuse_and_bump(project: Project, registry: str,
                                          base_image: str) -> None:
    parts.need("skopeo")
    env = parts.BUILDAH_ENV
    image = f"{registry}/taxi-eta"
    started = time.monotonic()
    first = project.inv(*build_args(registry, base_image), env=env, timeout=1800)
    print(f"cold build and push: {time.monotonic() - started:.1f}s")
    assert f"push --tls-verify=false {image}:0.1.0" in first.stdout
    tags = skopeo("list-tags", f"docker://{image}")["Tags"]
    head = project.git("rev-parse", "HEAD")
    assert set(tags) == {"0.1.0", f"git-{head[:12]}"}
    inspected = skopeo("inspect", f"docker://{image}:0.1.0")
    labels = inspected["Labels"]
    assert labels["org.opencontainers.image.version"] == "0.1.0"
    assert labels["org.opencontainers.image.revision"] == head
    digest = inspected["Digest"]
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                          f"docker://{image}:0.1.0"], capture_output=True, text=True, check=True)
    size = sum(layer["size"] for layer in json.loads(raw.stdout)["layers"])
    print(f"image size (compressed layers): {size / 2**20:.0f} MiB")

    # Inside the image: the version comes from the installed wheel, the user is not root.
    container = parts.buildah("from", "--tls-verify=false", f"{image}:0.1.0").stdout.strip()
    try:
        version = parts.buildah("run", container, "--", "python3", "-c",
                                "import taxi_eta; print(taxi_eta.read_version())").stdout
        assert version.strip() == "0.1.0"
        assert parts.buildah("run", container, "--", "id", "-u").stdout.strip() == "10001"
        config = json.loads(parts.buildah("inspect", container).stdout)
        assert config["OCIv1"]["config"]["User"] == "10001:10001"
    finally:
        parts.buildah("rm", container)

    # The same version again: nothing is rebuilt or pushed.
    again = project.inv(*build_args(registry, base_image), env=env)
    assert "image" in again.stdout and "exists" in again.stdout and "$ buildah" not in again.stdout

    # A merge commit with the same files (develop merged into main with --no-ff) promotes
    # the image as it is: same digest, nothing rebuilt.
    project.git("commit", "-q", "--allow-empty", "-m", "Merge branch 'develop'")
    promoted = project.inv(*build_args(registry, base_image), env=env)
    assert "exists" in promoted.stdout and "$ buildah" not in promoted.stdout
    assert skopeo("inspect", f"docker://{image}:0.1.0")["Digest"] == digest

    # Code changed without a version bump: the tag never moves.
    init = project.path / "src/taxi_eta/ml/predict.py"
    init.write_text(init.read_text() + "\n# a change\n")
    project.git("commit", "-q", "-am", "Change code, forget the bump")
    refused = project.inv(*build_args(registry, base_image), env=env, check=False)
    assert refused.returncode == 1
    assert "a version tag never moves, bump the version" in refused.stderr
    assert skopeo("inspect", f"docker://{image}:0.1.0")["Digest"] == digest

    # After the bump the new tag is built; the old one keeps its digest.
    project.bump("patch")
    started = time.monotonic()
    project.inv(*build_args(registry, base_image), env=env, timeout=1800)
    print(f"warm build and push: {time.monotonic() - started:.1f}s")
    assert {"0.1.0", "0.1.1"} <= set(skopeo("list-tags", f"docker://{image}")["Tags"])
    assert skopeo("inspect", f"docker://{image}:0.1.0")["Digest"] == digest
    assert skopeo("inspect", f"docker://{image}:0.1.1")["Labels"][
        "org.opencontainers.image.version"] == "0.1.1"


def test_without_any_builder(project: Project, tmp_path: Path) -> None:
    """No docker, podman or buildah on PATH: local goes on, dev/prod refuse."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to(subprocess.run(["which", "git"], capture_output=True,
                                                text=True).stdout.strip())
    env = {"PATH": str(bin_dir)}
    local = project.inv("build", env=env)
    assert local.stdout.strip().splitlines()[-1] == (
        "no image builder (docker, podman or buildah) available: image skipped")
    dev = project.inv("build", "--env", "dev", env=env, check=False)
    assert dev.returncode == 1
    assert dev.stderr.strip() == (
        "error: no image builder (docker, podman or buildah) available: dev needs the "
        "version's image; install one, or set IMAGE_BUILDER=none where images are built "
        "elsewhere")


def test_a_failed_build_says_where_to_look_and_how_a_laptop_goes_on(project: Project,
                                                                     tmp_path: Path) -> None:
    """A real failed build: buildah, a base image that is nowhere (offline, as a laptop with
    no base image at hand). The error names the builder's output and IMAGE_BUILDER=none."""
    parts.need("buildah")
    missing_base = "localhost:9/ml-template-no-such-base:1"  # nothing listens on port 9
    failed = project.inv("build", "-o", f"env.base_image={missing_base}",
                         "-o", "env.builder=buildah", env=parts.BUILDAH_ENV, check=False)
    assert failed.returncode == 1
    (line,) = failed.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: `buildah build -f ...` failed: ")
    assert line.endswith("(the build's output above says why; where images cannot be built "
                         "here, e.g. with no base image offline, IMAGE_BUILDER=none releases "
                         "without one)")
    assert project.run("git", "status", "--porcelain").stdout == ""
