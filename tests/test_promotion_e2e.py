"""Slow tier: git-flow in a real repository. A version released to a dev-like environment
from `develop` is promoted to a prod-like environment from `main`, after a --no-ff merge and
after a fast-forward, by content: the same files, the same wheel, copied rather than rebuilt.

Both environments are the local engine with their own artifact root and allowed branch,
which is what dev and prod differ by (their Kubeflow Pipelines side is the project's own
test of the KFP engine)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.project import Project
from tests.test_release_e2e import snapshot

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    project = Project.create(tmp_path_factory.mktemp("promotion"))
    project.env["IMAGE_BUILDER"] = "none"
    return project


def roots(project: Project) -> tuple[Path, Path]:
    return project.path.parent / "dev-artifacts", project.path.parent / "prod-artifacts"


def release_to(project: Project, env: str, *extra: str, check: bool = True):
    dev, prod = roots(project)
    if env == "dev":
        args = ["-o", f"env.artifact_root={dev}", "-o", "env.allowed_branches=[develop]"]
    else:
        args = ["-o", f"env.artifact_root={prod}", "-o", "env.allowed_branches=[main]",
                "-o", f"env.promote_from={dev}"]
    return project.inv("release", *args, *extra, check=check)


def code_record(root: Path, version: str) -> dict:
    return json.loads((root / f"code/{version}/code.json").read_text())


def refused(project: Project, message: str, *extra: str) -> None:
    dev, prod = roots(project)
    before, tags = (snapshot(dev), snapshot(prod)), project.git("tag", "--list")
    result = release_to(project, "prod", *extra, check=False)
    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert (snapshot(dev), snapshot(prod)) == before
    assert project.git("tag", "--list") == tags


def test_no_ff_merge_promotes_the_same_code(project: Project) -> None:
    dev, prod = roots(project)
    project.git("checkout", "-q", "-b", "develop")
    project.git("checkout", "-q", "-b", "feature/tune")
    (project.path / "conf/model/gradient_boosting.yaml").write_text(
        (project.path / "conf/model/gradient_boosting.yaml").read_text() + "# tuned\n")
    project.git("commit", "-q", "-am", "Tune the model")
    project.git("checkout", "-q", "develop")
    project.git("merge", "-q", "--no-ff", "-m", "Merge feature/tune", "feature/tune")
    assert "released 0.1.0 to local" in release_to(project, "dev").stdout
    tagged = project.git("rev-parse", "v0.1.0^{commit}")

    # A hotfix on main that is not on develop: other release inputs under the same version,
    # refused by the release and by what CD runs (--skip-released) alike.
    project.git("checkout", "-q", "main")
    project.git("merge", "-q", "--no-ff", "-m", "Merge develop", "develop")
    config = project.path / "conf/model/gradient_boosting.yaml"
    config.write_text(config.read_text() + "# hotfix without a bump\n")
    project.git("commit", "-q", "-am", "Hotfix")
    refused(project, "HEAD changes its release inputs (conf/model/gradient_boosting.yaml)")
    dev_before = snapshot(dev)
    cd = project.inv("release", "-o", f"env.artifact_root={dev}", "--skip-released", check=False)
    assert cd.returncode == 1 and cd.stderr.count("\n") == 1, cd.stderr
    assert "0.1.0 is already released" in cd.stderr and "`inv bump`" in cd.stderr
    assert snapshot(dev) == dev_before
    project.git("reset", "-q", "--hard", "HEAD~1")

    # A README fix on main is no release input: the version is promoted all the same.
    (project.path / "README.md").write_text("a docs fix on main\n")
    project.git("commit", "-q", "-am", "Docs")
    assert project.git("rev-parse", "HEAD") != tagged
    result = release_to(project, "prod")
    assert "released 0.1.0 to local" in result.stdout
    assert f"code of 0.1.0 promoted from {dev}" in result.stdout
    assert project.git("rev-parse", "v0.1.0^{commit}") == tagged  # the tag never moves
    promoted, original = code_record(prod, "0.1.0"), code_record(dev, "0.1.0")
    assert promoted["promoted_from"] == str(dev)
    assert promoted["wheel_sha256"] == original["wheel_sha256"]
    assert (prod / promoted["wheel"]).read_bytes() == (dev / original["wheel"]).read_bytes()
    assert promoted["git_tree"] == project.git("rev-parse", "HEAD^{tree}")
    assert json.loads((prod / "releases/0.1.0.json").read_text())["code"] == promoted


def test_fast_forward_promotes_too(project: Project) -> None:
    dev, prod = roots(project)
    project.git("checkout", "-q", "develop")
    project.git("merge", "-q", "--ff-only", "main")  # develop catches up with the merge commit
    assert project.bump("minor") == "0.2.0"
    release_to(project, "dev")
    project.git("checkout", "-q", "main")
    project.git("merge", "-q", "--ff-only", "develop")
    result = release_to(project, "prod")
    assert "released 0.2.0 to local" in result.stdout
    assert code_record(prod, "0.2.0")["wheel_sha256"] == code_record(dev, "0.2.0")["wheel_sha256"]
    table = project.inv("versions", "-o", f"env.artifact_root={prod}").stdout.splitlines()
    assert [row.split()[0] for row in table[1:]] == ["0.1.0", "0.2.0"]


def test_a_version_dev_lacks_and_a_missing_pinned_feature_version_are_refused(
        project: Project) -> None:
    dev, _ = roots(project)
    project.git("checkout", "-q", "main")
    project.bump("patch")
    pinned = ("-o", "features.version=0.0.9")
    refused(project, f"version 0.2.1 is not released in {dev} (env.promote_from)", *pinned)
    dry = release_to(project, "prod", *pinned, "--dry-run", check=False)
    assert dry.returncode == 1 and "(2 reasons above)" in dry.stderr
    assert f"refused: version 0.2.1 is not released in {dev}" in dry.stdout
    assert "refused: pinned feature version 0.0.9 does not exist" in dry.stdout
    project.git("reset", "-q", "--hard", "HEAD~1")
