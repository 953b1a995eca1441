"""The version's container image: `{registry}/{project}:{version}`, built once, never moved.

The builder is docker when its daemon answers, else podman, else buildah (or the one named in
`env.builder`). The version tag is immutable: when it exists, its revision label must be this
checkout's files (its git tree: a merge commit of the same files reuses the image, which is
how a version is promoted from dev to prod), otherwise the build is refused.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from dataclasses import dataclass

from {{ cookiecutter.package }}.errors import ReleaseError
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.release.requirements import pinned_requirements
from {{ cookiecutter.package }}.version import DISTRIBUTION

BUILDERS = ("docker", "podman", "buildah")
VERSION_LABEL = "org.opencontainers.image.version"
REVISION_LABEL = "org.opencontainers.image.revision"
SOURCE_LABEL = "org.opencontainers.image.source"
TREE_LABEL = "git.tree"  # what the image was built from; commits differ across merges


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


def revision(ctx: ReleaseContext) -> tuple[str, str]:
    """(commit, tree) the image is built from; `-dirty` when the tree has local changes."""
    suffix = "-dirty" if ctx.git.dirty_paths() else ""
    head = ctx.git.head()
    return head + suffix, ctx.git.tree(head) + suffix


def state(ctx: ReleaseContext) -> ImageState:
    reference = ctx.names.image
    builder = find_builder(str(ctx.cfg.env.builder))
    if builder is None:
        why = _no_builder(ctx)
        if ctx.env == "local":
            return ImageState(reference, False, why, skipped=True)
        return ImageState(reference, False, f"{why}: the release will refuse")
    labels = _labels_of(ctx, builder, reference)
    return ImageState(reference, labels is not None, f"builder {builder}")


def build_command(ctx: ReleaseContext, builder: str, rev: str, tree: str) -> list[str]:
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
        if str(ctx.cfg.env.builder) == "none":
            print("image build skipped (env.builder: none): images are built elsewhere")
            return None
        if ctx.env == "local":
            print("no image builder (docker, podman or buildah) available: image skipped")
            return None
        raise ReleaseError(f"no image builder installed: {ctx.env} needs the version's image")
    rev, tree = revision(ctx)
    existing = _labels_of(ctx, builder, names.image) if builder is not None else None
    if existing is not None:
        if existing.get(TREE_LABEL) != tree:
            raise ReleaseError(
                f"image {names.image} exists, built from files {existing.get(TREE_LABEL)} "
                f"(revision {existing.get(REVISION_LABEL)}), not {tree}: a version tag never "
                "moves, bump the version"
            )
        print(f"image {names.image} exists (revision {existing.get(REVISION_LABEL, '')[:12]})")
        return names.image
    if not dry_run:
        lock = ctx.project_root / "requirements.lock"
        lock.write_text("\n".join(pinned_requirements(DISTRIBUTION)) + "\n")
    tool = builder or "docker"
    commands = [build_command(ctx, tool, rev, tree)]
    if names.registry:
        commands += [
            [tool, "push", *_tls_flags(ctx, tool), tag]
            for tag in (names.image, names.image_for_revision(rev))
        ]
    for command in commands:
        print(f"$ {shlex.join(command)}")
        if not dry_run:
            _run(command, quiet=False, check=True, cwd=str(ctx.project_root))
    return names.image
