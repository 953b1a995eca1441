"""The release step `code`: publish the version's wheel and locked requirements to the store.

The wheel is built from the committed tree (`git archive`), never from the working tree, with
a fixed SOURCE_DATE_EPOCH and the build backend the lock pins (poetry-core, in the dev group)
so that the same tree always gives the same bytes. When the environment promotes from
another one (`env.promote_from`, e.g. prod from dev), the code that environment released
under this version is copied instead, byte for byte, after checking that it was built from
the same release inputs (`release/inputs.py`).
"""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from {{ cookiecutter.package }}.artifacts.code import (
    CodeRecord,
    commit_code,
    read_code,
    read_code_files,
)
from {{ cookiecutter.package }}.artifacts.store import ArtifactStore, StoreError, open_store
from {{ cookiecutter.package }}.engines.version_env import find_uv
from {{ cookiecutter.package }}.errors import ReleaseError
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.release.inputs import inputs_id
from {{ cookiecutter.package }}.release.requirements import pinned_requirements
from {{ cookiecutter.package }}.version import PROJECT

# 1980-01-01, the earliest time a zip archive can hold: wheels of one tree are identical.
SOURCE_DATE_EPOCH = "315532800"


def build_wheel(ctx: ReleaseContext, rev: str) -> tuple[str, bytes]:
    """The wheel of commit `rev`: (file name, bytes)."""
    with tempfile.TemporaryDirectory() as scratch:
        source, dist = Path(scratch) / "source", Path(scratch) / "dist"
        with tarfile.open(fileobj=io.BytesIO(ctx.git.archive(rev))) as archive:
            archive.extractall(source, filter="data")
        command = [find_uv(), "build", "--wheel", "--quiet", *_backend_options()]
        result = subprocess.run(
            [*command, "--out-dir", str(dist), str(source)],
            capture_output=True,
            text=True,
            env={**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH},
        )
        wheels = sorted(dist.glob("*.whl"))
        if result.returncode != 0 or len(wheels) != 1:
            detail = (result.stderr.strip().splitlines() or ["no wheel was written"])[-1]
            raise ReleaseError(f"cannot build the wheel of {rev[:12]}: {detail}")
        return wheels[0].name, wheels[0].read_bytes()


def _backend_options() -> list[str]:
    """Build with the backend installed in this environment when it is (the lock pins its
    version, and no build environment is made: 0.5 s instead of 0.8); otherwise, as after
    `uv sync --no-dev`, in a fresh one with the newest backend `[build-system]` allows."""
    if not locked_backend_installed():
        return []
    return ["--no-build-isolation", "--python", sys.executable]


def locked_backend_installed() -> bool:
    return importlib.util.find_spec("poetry.core") is not None


def _check_same_code(record: CodeRecord, ids: tuple[str, str], where: str) -> None:
    if not record.same_code(*ids):
        raise ReleaseError(
            f"version {record.version} was released {where} from other release inputs (tree "
            f"{record.git_tree[:12]}) than HEAD's: released code never changes, bump the "
            "version (`inv bump`)"
        )


def release_ids(ctx: ReleaseContext, head: str) -> tuple[str, str]:
    """(release inputs id, git tree) of `head`: what a code record is compared with."""
    return inputs_id(ctx.git, head), ctx.git.tree(head)


def promotion_source(
    ctx: ReleaseContext, head: str
) -> tuple[str, ArtifactStore, CodeRecord] | None:
    """Where this environment takes the version's code from (`env.promote_from`): the
    source store and its record, checked to hold this version built from HEAD's release
    inputs. None when the environment builds its own code. The dry run asks this too."""
    source_root = str(ctx.cfg.env.get("promote_from") or "")
    if not source_root:
        return None
    names = ctx.names
    try:
        source = open_store(source_root)
        promoted = read_code(source, names)
    except StoreError as error:
        raise ReleaseError(f"cannot read {source_root} to promote from: {error}") from error
    if promoted is None:
        raise ReleaseError(
            f"version {names.version} is not released in {source_root} (env.promote_from): "
            f"{ctx.env} takes a version's code from there, release it there first"
        )
    _check_same_code(promoted, release_ids(ctx, head), f"in {source_root}")
    return source_root, source, promoted


def publish_code(ctx: ReleaseContext, head: str) -> CodeRecord:
    """Make sure the store holds this version's code; idempotent; returns its record."""
    names, store = ctx.names, ctx.store
    ids = release_ids(ctx, head)
    existing = read_code(store, names)
    if existing is not None:
        _check_same_code(existing, ids, f"to {ctx.env}")
        print(f"code of {names.version} exists ({existing.wheel_filename})")
        return existing
    ctx.git.require_clean("a version's code is built from a commit: commit or stash first")
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    source = promotion_source(ctx, head)
    if source is not None:
        source_root, source_store, promoted = source
        try:
            wheel, requirements = read_code_files(source_store, promoted)
        except StoreError as error:
            raise ReleaseError(f"cannot promote from {source_root}: {error}") from error
        record = commit_code(
            store,
            names,
            promoted.wheel_filename,
            wheel,
            requirements,
            git_tree=ids[1],
            git_sha=promoted.git_sha,
            python=promoted.python,
            promoted_from=source_root,
            release_inputs=ids[0],
        )
        print(f"code of {names.version} promoted from {source_root} ({record.digest[:12]})")
        return record
    filename, wheel = build_wheel(ctx, head)
    requirements = ("\n".join(pinned_requirements(PROJECT)) + "\n").encode()
    record = commit_code(
        store, names, filename, wheel, requirements, ids[1], head, python, release_inputs=ids[0]
    )
    print(f"code of {names.version} published: {names.uri(record.wheel)}")
    return record
