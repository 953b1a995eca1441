"""A generated project installed in its own virtualenv (uv), driven like a user drives it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import GIT_IDENTITY, render

TOOLS = Path(sys.executable).parent  # uv, poetry and cookiecutter of the template's venv


class Project:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.env = {**os.environ, **GIT_IDENTITY}
        self.env.pop("VIRTUAL_ENV", None)

    @classmethod
    def create(cls, output_dir: Path, **answers: Any) -> Project:
        project = cls(render(output_dir, **answers))
        project.run(str(TOOLS / "uv"), "sync", "--locked", "--quiet")  # the hook's lock
        return project

    def run(self, *command: str, check: bool = True, timeout: float = 900,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(command, cwd=self.path, capture_output=True, text=True,
                                timeout=timeout, env={**self.env, **(env or {})})
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} exited {result.returncode}\n"
                                 f"--- stdout\n{result.stdout[-4000:]}\n"
                                 f"--- stderr\n{result.stderr[-4000:]}")
        return result

    def inv(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.path / ".venv/bin/inv"), *args, **kwargs)

    def git(self, *args: str) -> str:
        return self.run("git", *args).stdout.strip()

    def bump(self, rule: str) -> str:
        """`poetry version RULE` and commit, as a developer does before a release."""
        self.run(str(TOOLS / "poetry"), "version", rule)
        version = self.run(str(TOOLS / "poetry"), "version", "--short").stdout.strip()
        self.git("commit", "-q", "-am", f"Bump version to {version}")
        return version

    @property
    def artifacts(self) -> Path:
        return self.path / "artifacts"
