"""The release flow on a scratch git repository: preflight refusals, plan, schedules."""

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from conftest import git, snapshot

from {{ cookiecutter.package }}.artifacts.names import names_for
from {{ cookiecutter.package }}.errors import ReleaseError
from {{ cookiecutter.package }}.release import plan as release_plan
from {{ cookiecutter.package }}.release.code_publishing import publish_code
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.release.inputs import RELEASE_INPUTS, check_bump
from {{ cookiecutter.package }}.release.lifecycle import keep_newest_live, retire, rollback
from {{ cookiecutter.package }}.release.plan import ReleaseStep, Resource, make_steps, plan, release
from {{ cookiecutter.package }}.release.preflight import check_released_unchanged, preflight
from {{ cookiecutter.package }}.release.workflows import deploy_workflows


def context(cfg, repo: Path, version: str | None = None) -> ReleaseContext:
    return ReleaseContext(cfg=cfg, names=names_for(cfg, version), project_root=repo)


@pytest.mark.slow
def test_release_creates_every_resource_then_refuses_to_repeat(
    cfg, git_repo: Path, artifact_root: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("GIT_AUTHOR_NAME", "T")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "T")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "t@example.com")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "t@example.com")
    cfg.env.builder = "none"  # the scratch repo has no Dockerfile: the local release goes on
    ctx = context(cfg, git_repo)
    assert not any(r.exists for r in plan(ctx) if r.step != "image")
    record = release(ctx)
    assert record["version"] == cfg.version
    assert git(git_repo, "tag", "--list") == f"v{cfg.version}"
    assert all(r.exists for r in plan(ctx) if r.step != "image")
    assert json.loads((artifact_root / ctx.names.release_record_key).read_text()) == record
    assert list(record["timings_s"]) == [
        "tag",
        "build",
        "code",
        "train-adhoc",
        "deploy-workflow",
        "traffic",
    ]

    before = snapshot(artifact_root)
    with pytest.raises(ReleaseError, match="already released"):
        release(ctx)
    assert snapshot(artifact_root) == before


def test_dry_run_prints_the_plan_and_changes_nothing(
    cfg, git_repo: Path, artifact_root: Path, capsys
) -> None:
    release(context(cfg, git_repo), dry_run=True)
    out = capsys.readouterr().out
    assert "will be created" in out and "dry run: nothing was changed" in out
    # Every step of the release is in the plan, the traffic the version gets too.
    steps = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert steps[0] == "tag" and steps[-2:] == ["traffic", "record"]
    assert "clusters 0-7" in out and f"first release {cfg.version}" in out
    assert not artifact_root.exists()
    assert git(git_repo, "tag", "--list") == ""


def test_a_release_step_added_to_the_list_is_planned_dry_run_and_made(
    cfg, git_repo: Path, artifact_root: Path, monkeypatch, capsys
) -> None:
    sent: list[str] = []
    notify = ReleaseStep(
        "notify",
        lambda ctx: [Resource("notice", "team chat", bool(sent))],
        lambda ctx, head: sent.append(head) or "sent",
        record="notice",
    )
    monkeypatch.setattr(release_plan, "RELEASE_STEPS", (*release_plan.RELEASE_STEPS, notify))
    ctx = context(cfg, git_repo)

    release(ctx, dry_run=True)
    planned = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line[:2] == "  "]
    assert planned[-3:] == ["traffic", "notice", "record"] and sent == []

    made, timings = make_steps(ctx, "abc123", only=["notify"])
    assert made == {"notice": "sent"} and list(timings) == ["notify"] and sent == ["abc123"]
    assert plan(ctx)[-2] == Resource("notice", "team chat", True)
    assert not artifact_root.exists()  # only the added step ran


def test_an_unknown_release_step_is_refused(cfg, git_repo: Path) -> None:
    with pytest.raises(ReleaseError, match="^no release step deploy$"):
        make_steps(context(cfg, git_repo), "abc123", only=["deploy"])


def test_dirty_tree_is_refused(cfg, git_repo: Path, artifact_root: Path) -> None:
    (git_repo / "README.md").write_text("changed\n")
    with pytest.raises(ReleaseError, match="working tree is not clean"):
        preflight(context(cfg, git_repo))
    assert not artifact_root.exists()


def test_branch_not_allowed_for_the_env_is_refused(cfg, git_repo: Path) -> None:
    cfg.env.allowed_branches = ["develop"]
    with pytest.raises(ReleaseError, match="branch 'main' may not release to local"):
        preflight(context(cfg, git_repo))


def test_tag_on_a_commit_with_other_release_inputs_is_refused(cfg, git_repo: Path) -> None:
    git(git_repo, "tag", f"v{cfg.version}")
    (git_repo / "README.md").write_text("docs are no release input\n")
    git(git_repo, "commit", "-q", "-am", "docs")
    preflight(context(cfg, git_repo))
    (git_repo / "pyproject.toml").write_text(
        (git_repo / "pyproject.toml").read_text() + "# a hotfix without a bump\n"
    )
    git(git_repo, "commit", "-q", "-am", "hotfix")
    with pytest.raises(
        ReleaseError, match=r"HEAD changes its release inputs \(pyproject.toml\).*inv bump"
    ):
        preflight(context(cfg, git_repo))


def test_tag_on_a_commit_with_the_same_files_is_accepted(cfg, git_repo: Path) -> None:
    """develop merged into main with --no-ff: another commit, the same tree."""
    git(git_repo, "checkout", "-q", "-b", "develop")
    git(git_repo, "commit", "--allow-empty", "-q", "-m", "feature")
    git(git_repo, "tag", f"v{cfg.version}")
    git(git_repo, "checkout", "-q", "main")
    git(git_repo, "merge", "-q", "--no-ff", "-m", "Merge develop", "develop")
    assert git(git_repo, "rev-parse", "HEAD") != git(git_repo, "rev-parse", f"v{cfg.version}")
    preflight(context(cfg, git_repo))


def test_keep_live_retire_and_rollback(cfg, git_repo: Path) -> None:
    sha = git(git_repo, "rev-parse", "HEAD")
    versions = ["1.0.0", "1.1.0", "1.2.0"]
    for version in versions:
        ctx = context(cfg, git_repo, version)
        deploy_workflows(ctx, sha)
        ctx.store.write_text(ctx.names.release_record_key, "{}")  # released, untrained here
        keep_newest_live(ctx)

    def live() -> list[str]:
        ctx = context(cfg, git_repo)
        return [
            v for v in versions if all(s.enabled for s in ctx.engine.schedules(names_for(cfg, v)))
        ]

    assert live() == ["1.1.0", "1.2.0"]  # keep_live: 2
    retire(context(cfg, git_repo), "1.2.0")
    assert live() == ["1.1.0"]
    rollback(context(cfg, git_repo), "1.0.0")
    assert live() == ["1.0.0"]
    with pytest.raises(ReleaseError, match="no deployed workflows"):
        retire(context(cfg, git_repo), "7.0.0")


def test_redeploying_a_version_is_a_no_op_and_a_changed_pipeline_is_refused(
    cfg, git_repo: Path, artifact_root: Path
) -> None:
    sha = git(git_repo, "rev-parse", "HEAD")
    deploy_workflows(context(cfg, git_repo), sha)
    before = snapshot(artifact_root)
    deploy_workflows(context(cfg, git_repo), sha)
    assert snapshot(artifact_root) == before
    cfg.data.inference_batch_size = 7  # part of the release config recorded by training
    with pytest.raises(ReleaseError, match="differs from the training pipeline"):
        deploy_workflows(context(cfg, git_repo), sha)
    assert snapshot(artifact_root) == before


def test_a_tag_lock_left_by_a_killed_git_is_recovered(cfg, git_repo: Path) -> None:
    ctx = context(cfg, git_repo)
    lock = git_repo / ".git/refs/tags" / f"v{cfg.version}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("")
    with pytest.raises(ReleaseError, match="cannot lock ref"):  # a live git may hold it
        ctx.git.create_tag(f"v{cfg.version}", "release")
    stale = time.time() - 60
    os.utime(lock, (stale, stale))  # what a git killed a minute ago left
    ctx.git.create_tag(f"v{cfg.version}", "release")
    assert git(git_repo, "tag", "--list") == f"v{cfg.version}"
    assert not lock.exists()


def test_a_bad_model_parameter_is_refused_before_anything_is_created(
    cfg, git_repo: Path, artifact_root: Path
) -> None:
    cfg.model.alpha = "abc"  # the test config's model is a ridge regression
    with pytest.raises(ReleaseError, match="invalid configuration: model .*alpha"):
        release(context(cfg, git_repo))
    assert not artifact_root.exists()
    assert git(git_repo, "tag", "--list") == ""


def test_the_dry_run_lists_every_refusal_the_release_would_meet(
    cfg, git_repo: Path, artifact_root: Path, capsys
) -> None:
    (git_repo / "README.md").write_text("uncommitted\n")
    cfg.env.allowed_branches = ["develop"]
    cfg.model.alpha = -1.0
    with pytest.raises(ReleaseError, match=r"would be refused \(3 reasons above\)"):
        release(context(cfg, git_repo), dry_run=True)
    refused = [line for line in capsys.readouterr().out.splitlines() if line.startswith("refused:")]
    assert len(refused) == 3
    assert "working tree is not clean" in refused[0]
    assert "branch 'main' may not release to local" in refused[1]
    assert "alpha" in refused[2]
    # The real release meets the first of them, and creates nothing either.
    with pytest.raises(ReleaseError) as real:
        release(context(cfg, git_repo))
    assert refused[0] == f"refused: {real.value}"
    assert not artifact_root.exists()
    assert git(git_repo, "tag", "--list") == ""


def test_dry_run_and_release_agree_on_the_image(
    cfg, git_repo: Path, artifact_root: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    """dev with no builder on this machine: both refuse, before anything is created; with
    IMAGE_BUILDER=none (images built elsewhere) both go on without one."""
    bin_dir = tmp_path / "bin"  # a PATH with git and no docker, podman or buildah
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to(shutil.which("git"))
    monkeypatch.setenv("PATH", str(bin_dir))
    cfg.env.name = "dev"
    with pytest.raises(ReleaseError, match="would be refused"):
        release(context(cfg, git_repo), dry_run=True)
    out = capsys.readouterr().out
    refusals = [line for line in out.splitlines() if line.startswith("refused:")]
    assert refusals == [
        "refused: no image builder (docker, podman or buildah) available: dev needs the "
        "version's image; install one, or set IMAGE_BUILDER=none where images are built elsewhere"
    ]
    assert out.index("refused:") < out.index("release ")  # refusals before the plan
    assert "the release refuses" in out
    with pytest.raises(ReleaseError) as real:
        release(context(cfg, git_repo))
    assert refusals[0] == f"refused: {real.value}"
    assert not artifact_root.exists() and git(git_repo, "tag", "--list") == ""

    cfg.env.builder = "none"
    release(context(cfg, git_repo), dry_run=True)
    out = capsys.readouterr().out
    image_line = next(line for line in out.splitlines() if line.startswith("  image"))
    assert "skipped" in image_line and "IMAGE_BUILDER=none" in image_line
    assert "refused" not in out


@pytest.mark.heavy
def test_dry_run_checks_the_environment_it_promotes_from(
    cfg, git_repo: Path, artifact_root: Path, tmp_path: Path, capsys
) -> None:
    source = tmp_path / "dev-artifacts"
    cfg.env.promote_from = str(source)
    with pytest.raises(ReleaseError, match="would be refused"):
        release(context(cfg, git_repo), dry_run=True)
    out = capsys.readouterr().out
    assert f"refused: version {cfg.version} is not released in {source} (env.promote_from)" in out

    # Released there from other release inputs: refused too, naming the remedy.
    dev_cfg = cfg.copy()
    dev_cfg.env.promote_from = ""
    dev_cfg.env.artifact_root = str(source)
    publish_code(context(dev_cfg, git_repo), git(git_repo, "rev-parse", "HEAD"))
    (git_repo / "pyproject.toml").write_text(
        (git_repo / "pyproject.toml").read_text() + "# changed\n"
    )
    git(git_repo, "commit", "-q", "-am", "other inputs")
    with pytest.raises(ReleaseError, match="would be refused"):
        release(context(cfg, git_repo), dry_run=True)
    out = capsys.readouterr().out
    assert f"was released in {source} from other release inputs" in out and "inv bump" in out
    assert not artifact_root.exists()


def test_check_bump_and_skip_released_hold_a_released_version_to_its_inputs(
    cfg, git_repo: Path, artifact_root: Path
) -> None:
    ctx = context(cfg, git_repo)
    version = cfg.version
    assert "has no tag" in check_bump(ctx.git, version)  # not released: merging releases it
    git(git_repo, "tag", f"v{version}")
    ctx.store.write_text(
        ctx.names.release_record_key, json.dumps({"git_sha": git(git_repo, "rev-parse", "HEAD")})
    )
    assert "keeps its release inputs" in check_bump(ctx.git, version)
    check_released_unchanged(ctx)

    (git_repo / "README.md").write_text("docs, tests and CI files are no release inputs\n")
    git(git_repo, "commit", "-q", "-am", "docs")
    assert "keeps its release inputs" in check_bump(ctx.git, version)
    check_released_unchanged(ctx)

    package = next((git_repo / "src").iterdir())
    for number in range(5):
        (package / f"hotfix_{number}.py").write_text("FIXED = True\n")
    git(git_repo, "add", "-A")
    git(git_repo, "commit", "-q", "-m", "hotfix without a bump")
    expected = (
        rf"version {version} is already released from [0-9a-f]+, and HEAD changes its "
        rf"release inputs \(src/{package.name}/hotfix_0.py, .*hotfix_2.py and 2 more\): "
        r"bump the version \(`inv bump`\)"
    )
    for check in (lambda: check_bump(ctx.git, version), lambda: check_released_unchanged(ctx)):
        with pytest.raises(ReleaseError, match=expected):
            check()


def test_the_release_inputs_are_what_the_image_is_built_from() -> None:
    """Every file the image's build context lets in (.dockerignore) is a release input."""
    from {{ cookiecutter.package }}.version import PROJECT_ROOT

    allowed = [
        line[1:].rstrip("/")
        for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    derived = {"requirements.lock", "requirements-build.lock"}  # by `inv build`, from the lock
    assert set(allowed) - derived <= set(RELEASE_INPUTS)
    assert {"src", "conf", "pyproject.toml", "uv.lock", "Dockerfile"} <= set(RELEASE_INPUTS)
