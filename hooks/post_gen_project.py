"""Finish the generated project: drop files of options not chosen, make the first commit.

Importable: the template's tests call ``files_to_remove`` and ``init_git`` directly.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any


def files_to_remove(answers: dict[str, Any]) -> list[str]:
    """Paths (relative to the project) that belong to options the user did not choose."""
    remove = []
    if answers["license"] == "Proprietary":
        remove.append("LICENSE")
    if answers["ci"] == "none":
        remove.append(".github")
    return remove


def prune(project_dir: Path, answers: dict[str, Any]) -> None:
    for relative in files_to_remove(answers):
        path = project_dir / relative
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def init_git(project_dir: Path, author: str, email: str) -> bool:
    """`git init -b main` and a first commit; False (with a warning) when git is missing."""
    if shutil.which("git") is None:
        print("WARNING: git not found; run `git init -b main` yourself.", file=sys.stderr)
        return False
    identity = ["-c", f"user.name={author}", "-c", f"user.email={email}"]

    def git(*args: str) -> None:
        subprocess.run(["git", *identity, *args], cwd=project_dir, check=True,
                       stdout=subprocess.DEVNULL)

    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-q", "--no-verify", "-m", "Initial commit from the ML release template")
    return True


def next_steps(answers: dict[str, Any]) -> str:
    return "\n".join([
        f"Created {answers['project']} (version {answers['version']}).",
        "Next steps:",
        f"  cd {answers['project']}",
        "  poetry install            # or: uv sync",
        "  poetry run inv --list     # the release tasks",
        "  poetry run inv release    # a full local release: image, features, model, workflows",
    ])


def main(raw_answers: str, project_dir: Path) -> int:
    answers = json.loads(raw_answers)
    prune(project_dir, answers)
    init_git(project_dir, answers["author"], answers["email"])
    print(next_steps(answers))
    return 0


if __name__ == "__main__":
    sys.exit(main(r"""{{ cookiecutter | tojson }}""", Path.cwd()))
