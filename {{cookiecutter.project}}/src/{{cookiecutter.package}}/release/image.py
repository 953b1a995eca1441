"""The version's container image: `{registry}/{project}:{version}`, built once, never moved.

The builder is docker when its daemon answers, else podman, else buildah (or the one named in
`env.builder`). The version tag is immutable: when it exists, its revision label must be this
checkout's release inputs (`release/inputs.py`: a merge commit of the same files reuses the
image, which is how a version is promoted from dev to prod), otherwise the build is refused.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass

from {{ cookiecutter.package }}.errors import ReleaseError
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.release.inputs import inputs_id
from {{ cookiecutter.package }}.release.requirements import (
    pinned_build_backend,
    pinned_requirements,
)
from {{ cookiecutter.package }}.version import PROJECT

BUILDERS = ("docker", "podman", "buildah")
VERSION_LABEL = "org.opencontainers.image.version"
REVISION_LABEL = "org.opencontainers.image.revision"
SOURCE_LABEL = "org.opencontainers.image.source"
TREE_LABEL = "git.tree"  # the commit's whole tree, for people; commits differ across merges
INPUTS_LABEL = "release.inputs"  # what the image was built from (release/inputs.py)


@dataclass(frozen=True)
class ImageState:
    reference: str
    exists: bool
    note: str = ""
    skipped: bool = False  # no builder on the local env: the release goes on without it


def _run(
    command: list[str],
    check: bool = True,
    quiet: bool = True,
    timeout: int | None = None,
    cwd: str | None = None,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=quiet, text=True, timeout=timeout, cwd=cwd)
    if check and result.returncode != 0:
        detail = (result.stderr or "").strip().splitlines()
        raise ReleaseError(
            f"`{shlex.join(command[:3])} ...` failed: "
            f"{detail[-1] if detail else 'exit ' + str(result.returncode)}"
        )
    return result


def find_builder(preference: str) -> str | None:
    """The builder to use; None when none is installed or the config says `none`."""
    if preference == "none":
        return None
    if preference != "auto":
        if preference not in BUILDERS:
            raise ReleaseError(
                f"unknown builder {preference!r}: use auto, none, {', '.join(BUILDERS)}"
            )
        if shutil.which(preference) is None:
            raise ReleaseError(f"builder {preference} is not installed")
        return preference
    if shutil.which("docker") and _run(["docker", "info"], check=False, timeout=20).returncode == 0:
        return "docker"
    for builder in ("podman", "buildah"):
        if shutil.which(builder):
            return builder
    return None


def _tls_flags(ctx: ReleaseContext, tool: str) -> list[str]:
    """Plain-HTTP registry flags for buildah, podman and skopeo (docker decides that itself)."""
    insecure = bool(ctx.cfg.env.get("insecure_registry", False))
    return ["--tls-verify=false"] if insecure and tool != "docker" else []


def _labels_of(ctx: ReleaseContext, builder: str, reference: str) -> dict | None:
    """The labels of `reference` in the registry (or local storage), None when absent."""
    if ctx.names.registry and shutil.which("skopeo"):
        result = _run(
            ["skopeo", "inspect", *_tls_flags(ctx, "skopeo"), f"docker://{reference}"],
            check=False,
        )
        return (json.loads(result.stdout).get("Labels") or {}) if result.returncode == 0 else None
    if ctx.names.registry:
        pulled = _run([builder, "pull", *_tls_flags(ctx, builder), reference], check=False)
        if pulled.returncode != 0:
            return None
    command = (
        [builder, "inspect", "--type", "image", reference]
        if builder == "buildah"
        else [builder, "image", "inspect", reference]
    )
    result = _run(command, check=False)
    if result.returncode != 0:
        return None
    data = json.loads(result.stdout)
    data = data[0] if isinstance(data, list) else data
    config = data.get("Config") or data.get("OCIv1", {}).get("config") or {}
    return config.get("Labels") or {}


def revision(ctx: ReleaseContext) -> tuple[str, str, str]:
    """(commit, tree, release inputs) the image is built from; `-dirty` when the working tree
    has local changes."""
    suffix = "-dirty" if ctx.git.dirty_paths() else ""
    head = ctx.git.head()
    return head + suffix, ctx.git.tree(head) + suffix, inputs_id(ctx.git, head) + suffix


def _same_files(labels: dict, tree: str, release_inputs: str) -> bool:
    """An image of an older template has no inputs label: its whole tree is compared."""
    if INPUTS_LABEL in labels:
        return labels[INPUTS_LABEL] == release_inputs
    return labels.get(TREE_LABEL) == tree


def _may_skip(ctx: ReleaseContext) -> bool:
    """Without a builder, the release goes on without an image locally, or when the config
    says images are built elsewhere (`env.builder: none`); dev and prod need one otherwise."""
    return ctx.env == "local" or str(ctx.cfg.env.builder) == "none"


def check(ctx: ReleaseContext) -> None:
    """Preflight: a builder exists wherever the release needs an image (the plan, the dry run
    and the release decide this here, once)."""
    if find_builder(str(ctx.cfg.env.builder)) is None and not _may_skip(ctx):
        raise ReleaseError(
            f"{_no_builder(ctx)}: {ctx.env} needs the version's image; install one, or set "
            "IMAGE_BUILDER=none where images are built elsewhere"
        )


def base_image(ctx: ReleaseContext) -> str:
    """The image the Dockerfile builds from: `env.base_image`, else its `ARG BASE_IMAGE`."""
    given = str(ctx.cfg.env.get("base_image") or "")
    if given:
        return given
    dockerfile = ctx.project_root / "Dockerfile"
    text = dockerfile.read_text() if dockerfile.is_file() else ""
    found = re.search(r"^ARG BASE_IMAGE=(\S+)", text, re.MULTILINE)
    return found.group(1) if found else ""


def check_base(ctx: ReleaseContext) -> None:
    """Preflight: a build that will run can reach its base image, in the builder's own
    storage or in its registry (`skopeo inspect`), before the release tags anything."""
    builder = find_builder(str(ctx.cfg.env.builder))
    if builder is None or not (base := base_image(ctx)) or state(ctx).exists:
        return
    local = [builder, "inspect", "--type", "image", base] if builder == "buildah" else [
        builder, "image", "inspect", base]  # fmt: skip
    if _run(local, check=False, timeout=60).returncode == 0:
        return
    why = f"it is not in {builder}'s storage"
    if shutil.which("skopeo"):
        remote = ["skopeo", "inspect", "--raw", *_tls_flags(ctx, "skopeo"), f"docker://{base}"]
        try:
            found = _run(remote, check=False, timeout=30)
        except subprocess.TimeoutExpired:
            found = subprocess.CompletedProcess(remote, 1, "", "no answer in 30 s")
        if found.returncode == 0:
            return
        detail = (found.stderr or "").strip().splitlines()
        why += f" and its registry did not answer ({detail[-1][:160] if detail else 'no reason'})"
    raise ReleaseError(
        f"the image builder cannot reach its base image {base}: {why}; set env.base_image to "
        "one it has, or IMAGE_BUILDER=none where images cannot be built here"
    )


def state(ctx: ReleaseContext) -> ImageState:
    reference = ctx.names.image
    builder = find_builder(str(ctx.cfg.env.builder))
    if builder is None:
        why = _no_builder(ctx)
        if _may_skip(ctx):
            return ImageState(reference, False, why, skipped=True)
        return ImageState(reference, False, f"{why}: the release refuses")
    labels = _labels_of(ctx, builder, reference)
    return ImageState(reference, labels is not None, f"builder {builder}")


def build_command(
    ctx: ReleaseContext, builder: str, rev: str, tree: str, release_inputs: str
) -> list[str]:
    names = ctx.names
    command = [builder, "build", "-f", "Dockerfile"]
    if builder == "buildah":
        command.append("--layers")  # docker and podman cache layers by default, buildah not
    base = str(ctx.cfg.env.get("base_image") or "")
    if base:
        command += ["--build-arg", f"BASE_IMAGE={base}"]
    for key, value in {
        VERSION_LABEL: names.version,
        REVISION_LABEL: rev,
        TREE_LABEL: tree,
        INPUTS_LABEL: release_inputs,
        SOURCE_LABEL: names.project,
    }.items():
        command += ["--label", f"{key}={value}"]
    command += ["-t", names.image, "-t", names.image_for_revision(rev), "."]
    return command


def _no_builder(ctx: ReleaseContext) -> str:
    if str(ctx.cfg.env.builder) == "none":
        return "IMAGE_BUILDER=none: images are built elsewhere"
    return "no image builder (docker, podman or buildah) available"


def build(ctx: ReleaseContext, dry_run: bool = False) -> str | None:
    """Build and push the version's image; None when no builder exists on the local env.

    A dry run prints the tags and the commands, with or without a builder on this machine.
    """
    names = ctx.names
    builder = find_builder(str(ctx.cfg.env.builder))
    if builder is None and dry_run:
        print(f"{_no_builder(ctx)}; with docker, the build would be:")
    elif builder is None:
        check(ctx)
        print(f"{_no_builder(ctx)}: image skipped")
        return None
    rev, tree, release_inputs = revision(ctx)
    existing = _labels_of(ctx, builder, names.image) if builder is not None else None
    if existing is not None:
        if not _same_files(existing, tree, release_inputs):
            raise ReleaseError(
                f"image {names.image} exists, built from other release inputs (revision "
                f"{existing.get(REVISION_LABEL)}) than HEAD's: a version tag never moves, "
                "bump the version (`inv bump`)"
            )
        print(f"image {names.image} exists (revision {existing.get(REVISION_LABEL, '')[:12]})")
        return names.image
    if not dry_run:
        locks = {
            "requirements.lock": pinned_requirements(PROJECT),
            "requirements-build.lock": pinned_build_backend(ctx.project_root / "pyproject.toml"),
        }
        for filename, pins in locks.items():
            (ctx.project_root / filename).write_text("\n".join(pins) + "\n")
    tool = builder or "docker"
    commands = [build_command(ctx, tool, rev, tree, release_inputs)]
    if names.registry:
        commands += [
            [tool, "push", *_tls_flags(ctx, tool), tag]
            for tag in (names.image, names.image_for_revision(rev))
        ]
    for command in commands:
        print(f"$ {shlex.join(command)}")
        if not dry_run:
            try:
                _run(command, quiet=False, check=True, cwd=str(ctx.project_root))
            except ReleaseError as error:
                raise ReleaseError(f"{error} ({_remedy(ctx, command is commands[0])})") from None
    return names.image


def _remedy(ctx: ReleaseContext, building: bool) -> str:
    """What to do about a failed build or push: the builder's output above says why."""
    what = "the build's" if building else "the push's"
    if building and _may_skip(ctx):  # a laptop offline has no base image, often
        return (
            f"{what} output above says why; where images cannot be built here, e.g. with no "
            "base image offline, IMAGE_BUILDER=none releases without one"
        )
    return f"{what} output above says why"


# -- retention (`release.retention`) ----------------------------------------------------------


@dataclass(frozen=True)
class PushedImage:
    """A version's image in the registry: the manifest its tag names, and the compressed
    size of its layers (layers another image shares stay when this one goes)."""

    reference: str  # docker://{registry}/{project}@sha256:...
    digest: str
    bytes: int


def pushed(ctx: ReleaseContext, version: str) -> PushedImage | None:
    """The image `version`'s tag names in the registry, read with skopeo; None when there
    is no registry (images in a builder's local storage are the builder's to prune), or no
    such tag."""
    names = ctx.names_of(version)
    if not names.registry:
        return None
    if shutil.which("skopeo") is None:
        raise ReleaseError(
            f"retention reads and deletes images in {names.registry} with skopeo: install it "
            "(apt-get install skopeo)"
        )
    result = _run(
        ["skopeo", "inspect", *_tls_flags(ctx, "skopeo"), f"docker://{names.image}"],
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        if "manifest unknown" in result.stderr or "not found" in result.stderr.lower():
            return None
        raise ReleaseError(f"cannot read image {names.image}: {_skopeo_error(result.stderr)}")
    found = json.loads(result.stdout)
    size = sum(int(layer.get("Size") or 0) for layer in found.get("LayersData") or [])
    digest = str(found["Digest"])
    return PushedImage(f"docker://{names.image_repository}@{digest}", digest, size)


def delete_pushed(ctx: ReleaseContext, image: PushedImage) -> None:
    """Delete the manifest (every tag that names it goes with it); gone already is fine."""
    result = _run(
        ["skopeo", "delete", *_tls_flags(ctx, "skopeo"), image.reference],
        check=False,
        timeout=120,
    )
    if result.returncode != 0 and "manifest unknown" not in result.stderr:
        raise ReleaseError(f"cannot delete {image.reference}: {_skopeo_error(result.stderr)}")


def _skopeo_error(stderr: str) -> str:
    """The message of skopeo's last log line (`time=... level=fatal msg="..."`)."""
    last = (stderr.strip().splitlines() or ["no output"])[-1]
    found = re.search(r'msg="((?:[^"\\]|\\.)*)"', last)
    return found.group(1).replace('\\"', '"') if found else last
