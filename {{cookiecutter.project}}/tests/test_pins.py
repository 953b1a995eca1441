"""What a release reuses is verified before it writes anything: pinned features (their
manifest and parts), and the image builder's base image (`release.preflight`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import git, release_model, snapshot

from {{ cookiecutter.package }}.artifacts.names import names_for
from {{ cookiecutter.package }}.artifacts.store import StoreError
from {{ cookiecutter.package }}.errors import ReleaseError
from {{ cookiecutter.package }}.release import image
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.release.plan import release
from {{ cookiecutter.package }}.reports.versions import released_state, where

RIDGE = {"_target_": "sklearn.linear_model.Ridge"}


def context(cfg, repo: Path, version: str | None = None) -> ReleaseContext:
    return ReleaseContext(cfg=cfg, names=names_for(cfg, version), project_root=repo)


def altered_manifest(root: Path, feature_version: str) -> Path:
    """One hex digit of a part's sha256 changed in the manifest (issue 50 (5))."""
    path = root / f"features/{feature_version}/train/manifest.json"
    manifest = json.loads(path.read_text())
    digest = manifest["parts"][0]["sha256"]
    manifest["parts"][0]["sha256"] = ("0" if digest[0] != "0" else "1") + digest[1:]
    path.write_text(json.dumps(manifest, indent=1))
    return path


def test_an_altered_manifest_or_part_is_named(cfg, tmp_path: Path, artifact_root: Path) -> None:
    release_model(artifact_root, "1.0.0", RIDGE, tmp_path)
    ctx = context(cfg, tmp_path, "1.0.0")
    ctx.feature_store.verify("1.0.0")
    part = (
        artifact_root
        / json.loads((artifact_root / "features/1.0.0/train/manifest.json").read_text())["parts"][
            0
        ]["key"]
    )
    whole = part.read_bytes()
    part.write_bytes(whole[:-1] + bytes([whole[-1] ^ 1]))
    with pytest.raises(StoreError, match=rf"^{part} does not match its sha256 in .*manifest"):
        ctx.feature_store.verify("1.0.0")
    part.write_bytes(whole)
    manifest = altered_manifest(artifact_root, "1.0.0")
    with pytest.raises(StoreError, match=rf"^{manifest} was changed after it was written"):
        ctx.feature_store.verify("1.0.0")
    assert released_state(ctx) == "-"  # no release record: nothing to say
    ctx.store.write_text(ctx.names.release_record_key, json.dumps({"version": "1.0.0"}))
    assert "features" in released_state(ctx) and released_state(ctx).startswith("ALTERED")


def test_a_release_pinned_to_altered_features_is_refused_before_its_tag(
    cfg, git_repo: Path, artifact_root: Path, tmp_path: Path, capsys
) -> None:
    release_model(artifact_root, "1.0.0", RIDGE, tmp_path)
    manifest = altered_manifest(artifact_root, "1.0.0")
    cfg.features.version = "1.0.0"  # the checkout's version reuses 1.0.0's features
    cfg.data.seed = cfg.data_source.seed = 1  # the source they were built from
    cfg.env.builder = "none"
    before = snapshot(artifact_root)
    with pytest.raises(ReleaseError, match="would be refused"):
        release(context(cfg, git_repo), dry_run=True)
    refused = [line for line in capsys.readouterr().out.splitlines() if line.startswith("refused")]
    assert refused == [f"refused: {manifest} was changed after it was written (its parts no "
                       "longer match its own digest): refusing features that are not what was "
                       "released"]  # fmt: skip
    with pytest.raises(ReleaseError, match=f"^{manifest} was changed"):
        release(context(cfg, git_repo))
    assert snapshot(artifact_root) == before and git(git_repo, "tag", "--list") == ""
    where(context(cfg, git_repo))
    assert f"ALTERED: {manifest} was changed" in capsys.readouterr().out.replace("\n", "")


def test_the_dry_run_refuses_a_base_image_the_builder_cannot_reach(
    cfg, git_repo: Path, tmp_path: Path, monkeypatch
) -> None:
    """The builder itself is a stand-in here (a script answering like buildah does when it
    lacks an image): the real builder is what the template's image test runs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("buildah", "skopeo"):
        script = bin_dir / tool
        script.write_text(f"#!/bin/sh\necho \"$0 $*\" >> {tmp_path}/calls\n"
                          f"echo '{tool}: image not known' >&2\nexit 1\n")  # fmt: skip
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    cfg.env.builder = "buildah"
    cfg.env.base_image = "localhost:9/no-such-base:1"
    ctx = context(cfg, git_repo)
    with pytest.raises(ReleaseError) as refused:
        image.check_base(ctx)
    assert str(refused.value) == (
        "the image builder cannot reach its base image localhost:9/no-such-base:1: it is not in "
        "buildah's storage and its registry did not answer (skopeo: image not known); set "
        "env.base_image to one it has, or IMAGE_BUILDER=none where images cannot be built here"
    )
    calls = (tmp_path / "calls").read_text().splitlines()
    assert any("inspect --type image localhost:9/no-such-base:1" in c for c in calls)
    assert any("docker://localhost:9/no-such-base:1" in c for c in calls)
    cfg.env.base_image = ""  # the Dockerfile's own, when none is given
    (git_repo / "Dockerfile").write_text("ARG BASE_IMAGE=python:3.11-slim\nFROM ${BASE_IMAGE}\n")
    assert image.base_image(ctx) == "python:3.11-slim"
