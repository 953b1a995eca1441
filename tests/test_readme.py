"""Slow tier: the generated README's commands, run as written in a fresh project.

The fenced shell blocks of "Set up", "Train" and "Release" run in order, as one newcomer
would type them (the environment activated as Set up says, and IMAGE_BUILDER=none as it
says for a machine with no registry at hand). Nothing but those blocks touches the project.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.conftest import render
from tests.project import TOOLS, Project

pytestmark = pytest.mark.slow

SECTIONS = ("Set up", "Train", "Release")


def shell_blocks(readme: str, heading: str) -> list[str]:
    section = readme.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.S)


def test_the_readme_runs_as_written(tmp_path: Path) -> None:
    project = Project(render(tmp_path))
    readme = (project.path / "README.md").read_text()
    # `source .venv/bin/activate` of Set up, for every later block; uv from this machine.
    path = f"{project.path / '.venv/bin'}:{TOOLS}:{os.environ['PATH']}"
    env = {"PATH": path, "IMAGE_BUILDER": "none"}
    for heading in SECTIONS:
        blocks = shell_blocks(readme, heading)
        assert blocks, f"no shell block under {heading!r}"
        script = "set -euo pipefail\n" + "\n".join(blocks)
        project.run("bash", "-c", script, env=env, timeout=1800)

    assert project.git("status", "--porcelain") == ""  # every documented command keeps it
    released = sorted(p.name for p in (project.artifacts / "releases").iterdir())
    assert released == ["0.1.0.json", "0.2.0.json"]
    assert project.git("tag", "--list").split() == ["v0.1.0", "v0.2.0"]
    assert (project.artifacts / "predictions/0.1.0").is_dir()
