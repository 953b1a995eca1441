"""Slow tier: `inv build` with a real builder (buildah) and a real registry on loopback."""

from __future__ import annotations

import json
import os
import re
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


def push_label_image(registry: str, label: str, *tags: str) -> str:
    """A tiny image (no layers, one label) pushed under `tags`; its digest."""
    container = parts.buildah("from", "scratch").stdout.strip()
    parts.buildah("config", "--label", f"made-for={label}", container)
    image = f"localhost/gc-test:{label}"
    parts.buildah("commit", "--rm", "-q", container, image)
    for tag in tags:
        parts.buildah("push", "--tls-verify=false", image, f"docker://{registry}/taxi-eta:{tag}")
    return str(skopeo("inspect", f"docker://{registry}/taxi-eta:{tags[0]}")["Digest"])


def test_gc_deletes_a_swept_versions_image_unless_a_kept_version_runs_it(
    registry: str, tmp_path: Path
) -> None:
    """Three local releases; in the registry 0.1.0 has an image of its own and 0.2.0 the
    image 0.3.0 (serving) runs. With 0.1.0 and 0.2.0 retired and no rollback window, the
    sweep deletes 0.1.0's manifest by digest and leaves the shared one."""
    parts.need("skopeo", "buildah")
    project = Project.create(tmp_path / "out")
    no_build = {"IMAGE_BUILDER": "none"}  # the images are pushed below, by hand
    project.inv("release", env=no_build)
    for _ in range(2):
        project.bump("minor")
        project.inv("release", env=no_build)
    project.inv("traffic", "--all", "0.3.0")
    for version in ("0.1.0", "0.2.0"):
        project.inv("retire", "--version", version)
    own = push_label_image(registry, "own", "0.1.0")
    shared = push_label_image(registry, "shared", "0.2.0", "0.3.0")
    assert own != shared
    gc = ["gc", "-o", f"env.registry={registry}", "-o", "env.insecure_registry=true",
          "-o", "retention.keep_retired=0", "-o", "retention.grace_days=0"]

    dry = project.inv(*gc).stdout
    assert re.search(r"^0\.1\.0: would tombstone: image 1 ", dry, re.M), dry
    assert re.search(r"^0\.2\.0: would tombstone: model 2 ", dry, re.M), dry  # + numpy form
    assert "image" not in next(line for line in dry.splitlines() if line.startswith("0.2.0"))
    project.inv(*gc, "--apply")
    assert skopeo("inspect", f"docker://{registry}/taxi-eta:0.1.0")["Digest"] == own
    project.inv(*gc, "--apply")

    gone = subprocess.run(["skopeo", "inspect", "--tls-verify=false",
                           f"docker://{registry}/taxi-eta:0.1.0"], capture_output=True, text=True)
    assert gone.returncode != 0 and "manifest unknown" in gone.stderr, gone.stderr
    for tag in ("0.2.0", "0.3.0"):
        assert skopeo("inspect", f"docker://{registry}/taxi-eta:{tag}")["Digest"] == shared
    audit = project.artifacts / "retention/audit/0.1.0"
    images = [json.loads(p.read_text()) for p in sorted(audit.glob("*-image.json"))]
    assert [(r["uri"], r["sha256"]) for r in images] == [
        (f"docker://{registry}/taxi-eta@{own}", own)]
    assert not list((project.artifacts / "retention/audit/0.2.0").glob("*-image.json"))
    # 0.3.0 still serves from its own model.
    assert "0.3.0" in project.inv("versions").stdout
