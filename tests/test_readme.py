"""Slow tier: the generated README's commands, run as written in a fresh project.

The fenced shell blocks of "Set up", "Train", "Release" and "Traffic" run in order, as one
newcomer would type them (the environment activated as Set up says, and IMAGE_BUILDER=none
as it says for a machine with no registry at hand). Nothing but those blocks touches the
project, which is generated with a first version other than the default: the examples must
name the versions the user chose.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.conftest import render
from tests.project import TOOLS, Project

pytestmark = pytest.mark.slow

SECTIONS = ("Set up", "Train", "Release", "Traffic")


def shell_blocks(readme: str, heading: str) -> list[str]:
    # The section whose heading starts with `heading` ("Traffic" is "Traffic: A/B, ...").
    section = readme.split(f"\n## {heading}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.S)


def test_the_readme_runs_as_written(tmp_path: Path) -> None:
    project = Project(render(tmp_path, version="1.4.2"))
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
    assert released == ["1.4.2.json", "1.5.0.json"]
    assert project.git("tag", "--list").split() == ["v1.4.2", "v1.5.0"]
    assert (project.artifacts / "predictions/1.4.2").is_dir()
    # Traffic ended with its last command, `inv rollback --to 1.4.2`.
    assert "rollback to 1.4.2" in project.inv("traffic").stdout
    schedules = {line.split()[0]: line.split()[6]
                 for line in project.inv("versions").stdout.splitlines()[1:]}
    assert schedules == {"1.4.2": "training:on,inference:on",
                         "1.5.0": "training:off,inference:off"}
