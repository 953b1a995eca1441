"""Slow tier: generated projects take template updates with the real cruft.

Two commits of this template in a scratch git repository stand for "the version a project
was generated from" and "the template after a change". Both ways in are covered:
`cookiecutter` (the hook records the template in `.cruft.json` and commits) and
`cruft create` (cruft records it; the user makes the first commit, as the hook says).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cookiecutter.main import cookiecutter

from tests.conftest import GIT_IDENTITY, TEMPLATE
from tests.project import TOOLS, Project

pytestmark = pytest.mark.slow

NEW_SECTION = "\n## Operations\n\nOn-call notes for {{ cookiecutter.project }}.\n"
NEW_FILE = "docs/operations.md"
USER_LINE = "Owned by the routing team.\n"


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                            env={**os.environ, **GIT_IDENTITY}, check=True)
    return result.stdout.strip()


def cruft(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(TOOLS / "cruft"), *args], cwd=project, capture_output=True,
                          text=True, env={**os.environ, **GIT_IDENTITY}, timeout=600)


@pytest.fixture
def template_repo(tmp_path: Path) -> Path:
    """This template's files (as they are now) committed in a repository of their own."""
    repo = tmp_path / "template"
    listed = git(TEMPLATE, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for name in filter(None, listed.split("\0")):
        source = TEMPLATE / name
        if source.is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "template: first version")
    return repo


def change_template(repo: Path) -> str:
    """A template change a project should receive: a README section and a new file."""
    project_dir = repo / "{{cookiecutter.project}}"
    with (project_dir / "README.md").open("a") as readme:
        readme.write(NEW_SECTION)
    (project_dir / NEW_FILE).parent.mkdir(exist_ok=True)
    (project_dir / NEW_FILE).write_text("# Operations of {{ cookiecutter.project }}\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "template: operations notes")
    return git(repo, "rev-parse", "HEAD")


def edit_as_user(project: Path) -> None:
    """A change of the project's own, in a file the template change also touches."""
    readme = project / "README.md"
    lines = readme.read_text().splitlines(keepends=True)
    readme.write_text("".join([*lines[:3], USER_LINE, *lines[3:]]))
    git(project, "commit", "-q", "-am", "Say who owns the project")


def assert_updated(project: Path, new_commit: str) -> None:
    check = cruft(project, "check")
    assert check.returncode != 0, "cruft check passed although the template moved on"

    update = cruft(project, "update", "--skip-apply-ask")
    assert update.returncode == 0, update.stdout + update.stderr
    assert "Good work" in update.stdout

    readme = (project / "README.md").read_text()
    assert USER_LINE in readme  # the project's own change survives
    assert "On-call notes for taxi-eta." in readme  # the template's change arrives, rendered
    assert (project / NEW_FILE).read_text() == "# Operations of taxi-eta\n"
    assert json.loads((project / ".cruft.json").read_text())["commit"] == new_commit
    assert not list(project.rglob("*.rej"))
    git(project, "add", "-A")
    changed = git(project, "diff", "--cached", "--name-only").split()
    assert changed == [".cruft.json", "README.md", NEW_FILE]  # nothing else, no uv.lock
    git(project, "commit", "-q", "-m", "Template update")
    assert cruft(project, "check").returncode == 0


def test_a_cookiecutter_project_records_its_template_and_takes_updates(
        template_repo: Path, tmp_path: Path) -> None:
    first_commit = git(template_repo, "rev-parse", "HEAD")
    path = Path(cookiecutter(str(template_repo), no_input=True, output_dir=str(tmp_path / "out")))

    record = json.loads((path / ".cruft.json").read_text())
    assert record["template"] == str(template_repo)
    assert record["commit"] == first_commit
    assert record["context"]["cookiecutter"]["project"] == "taxi-eta"
    assert git(path, "ls-files", ".cruft.json", "uv.lock").split() == [".cruft.json", "uv.lock"]
    assert git(path, "status", "--porcelain") == ""
    assert cruft(path, "check").returncode == 0

    edit_as_user(path)
    assert_updated(path, change_template(template_repo))

    # The updated project still installs from its lock and passes its own tests.
    project = Project(path)
    project.run(str(TOOLS / "uv"), "sync", "--locked", "--quiet")
    assert project.git("status", "--porcelain") == ""
    project.run(str(path / ".venv/bin/inv"), "test")


def test_a_cruft_project_takes_updates(template_repo: Path, tmp_path: Path) -> None:
    first_commit = git(template_repo, "rev-parse", "HEAD")
    out = tmp_path / "out"
    create = cruft(tmp_path, "create", "--no-input", "--output-dir", str(out),
                   str(template_repo))
    assert create.returncode == 0, create.stdout + create.stderr
    assert "git init -b main && git add -A" in create.stdout  # what to do next, said once
    path = out / "taxi-eta"
    assert not (path / ".git").exists()  # left to the user: cruft re-renders this template
    assert (path / "uv.lock").is_file()
    assert json.loads((path / ".cruft.json").read_text())["commit"] == first_commit

    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "Project from template")
    edit_as_user(path)
    assert_updated(path, change_template(template_repo))
