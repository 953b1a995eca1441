"""The release step `code`: publish the version's wheel and locked requirements to the store.

The wheel is built from the committed tree (`git archive`), never from the working tree, with
a fixed SOURCE_DATE_EPOCH so that the same tree always gives the same bytes. When the
environment promotes from another one (`env.promote_from`, e.g. prod from dev), the code
that environment released under this version is copied instead, byte for byte, after
checking that it was built from the same tree.
"""

from __future__ import annotations

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
from {{ cookiecutter.package }}.artifacts.store import StoreError, open_store
from {{ cookiecutter.package }}.engines.version_env import find_uv
from {{ cookiecutter.package }}.errors import ReleaseError
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.release.requirements import pinned_requirements
from {{ cookiecutter.package }}.version import DISTRIBUTION

# 1980-01-01, the earliest time a zip archive can hold: wheels of one tree are identical.
SOURCE_DATE_EPOCH = "315532800"


def build_wheel(ctx: ReleaseContext, rev: str) -> tuple[str, bytes]:
    """The wheel of commit `rev`: (file name, bytes)."""
    with tempfile.TemporaryDirectory() as scratch:
        source, dist = Path(scratch) / "source", Path(scratch) / "dist"
        with tarfile.open(fileobj=io.BytesIO(ctx.git.archive(rev))) as archive:
            archive.extractall(source, filter="data")
        result = subprocess.run(
            [find_uv(), "build", "--wheel", "--quiet", "--out-dir", str(dist), str(source)],
            capture_output=True,
            text=True,
            env={**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH},
        )
        wheels = sorted(dist.glob("*.whl"))
        if result.returncode != 0 or len(wheels) != 1:
            detail = (result.stderr.strip().splitlines() or ["no wheel was written"])[-1]
            raise ReleaseError(f"cannot build the wheel of {rev[:12]}: {detail}")
        return wheels[0].name, wheels[0].read_bytes()


def _check_same_tree(record: CodeRecord, tree: str, where: str) -> None:
    if record.git_tree != tree:
        raise ReleaseError(
            f"version {record.version} was released {where} from tree {record.git_tree[:12]}, "
            f"HEAD's tree is {tree[:12]}: released code never changes, bump the version"
        )


def publish_code(ctx: ReleaseContext, head: str) -> CodeRecord:
    """Make sure the store holds this version's code; idempotent; returns its record."""
    names, store = ctx.names, ctx.store
    tree = ctx.git.tree(head)
    existing = read_code(store, names)
    if existing is not None:
        _check_same_tree(existing, tree, f"to {ctx.env}")
        print(f"code of {names.version} exists ({existing.wheel_filename})")
        return existing
    ctx.git.require_clean("a version's code is built from a commit: commit or stash first")
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    source_root = str(ctx.cfg.env.get("promote_from") or "")
    if source_root:
        try:
            source = open_store(source_root)
            promoted = read_code(source, names)
        except StoreError as error:
            raise ReleaseError(f"cannot read {source_root} to promote from: {error}") from error
        if promoted is not None:
            _check_same_tree(promoted, tree, f"in {source_root}")
            wheel, requirements = read_code_files(source, promoted)
            record = commit_code(
                store,
                names,
                promoted.wheel_filename,
                wheel,
                requirements,
                git_tree=tree,
                git_sha=promoted.git_sha,
                python=promoted.python,
                promoted_from=source_root,
            )
            print(f"code of {names.version} promoted from {source_root} ({record.digest[:12]})")
            return record
    filename, wheel = build_wheel(ctx, head)
    requirements = ("\n".join(pinned_requirements(DISTRIBUTION)) + "\n").encode()
    record = commit_code(store, names, filename, wheel, requirements, tree, head, python)
    print(f"code of {names.version} published: {names.uri(record.wheel)}")
    return record
