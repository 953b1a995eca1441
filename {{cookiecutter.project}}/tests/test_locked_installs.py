"""Nothing is installed or resolved at run time outside uv.lock.

What a run installs (the tracking server, a version's environment, the image) comes from a
lock: an install that resolves against the index on the day it runs makes a run depend on what
the index holds that day (a server whose pinned dependency is missing, a newer build backend).
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

from {{ cookiecutter.package }}.engines.version_env import find_uv
from {{ cookiecutter.package }}.release.requirements import (
    pinned_build_backend,
    pinned_requirements,
)
from {{ cookiecutter.package }}.tracking_server import GROUP, locked_requirements, pinned
from {{ cookiecutter.package }}.version import PROJECT_ROOT

# The files a run executes: the package, the tasks, the image and the CI/CD workflows.
RUN_TIME_FILES = [
    *sorted((PROJECT_ROOT / "src").rglob("*.py")),
    *sorted((PROJECT_ROOT / "tasks").glob("*.py")),
    PROJECT_ROOT / "Dockerfile",
    *sorted((PROJECT_ROOT / ".github").rglob("*.yml")),
]
# Installs that resolve by themselves: never at run time. (`\W+` also spans a command
# written as a Python list, `"tool", "run"`.)
RESOLVING = re.compile(r"\btool\W+(?:run|install)\b|\buvx\b|\buv\W+add\b|\bpip\s+download\b")
# Installs that are allowed when they take a lock (or only the named file, --no-deps).
INSTALL = re.compile(r"\bpip\W+(?:install|sync)\b")
FROM_LOCK = re.compile(r"-r\b|--require-hashes|--no-deps")
COMMAND_END = re.compile(r"\n\s*\n|\)\n|&&|\n(?!\s)")
# Lines that name an install without running one, each with why.
NOT_INSTALLS = {
    '"pip install" in full_command[script]': "the warm worker recognises kfp's own install step",
    "(or `pip install uv`)": "advice in the error that says uv is missing",
}


def without_comments(path: Path) -> str:
    return "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())


def test_no_run_time_file_resolves_packages_by_itself() -> None:
    found = [
        f"{path.relative_to(PROJECT_ROOT)}: {match.group()}"
        for path in RUN_TIME_FILES
        for match in RESOLVING.finditer(without_comments(path))
    ]
    assert found == []


def test_every_run_time_install_takes_a_lock() -> None:
    unlocked = []
    installs = 0
    for path in RUN_TIME_FILES:
        text = without_comments(path)
        for match in INSTALL.finditer(text):
            line = text[text.rfind("\n", 0, match.start()) + 1 : text.find("\n", match.end())]
            if any(fragment in line for fragment in NOT_INSTALLS):
                continue
            installs += 1
            rest = text[match.end() :]
            end = COMMAND_END.search(rest)
            command = rest[: end.start() if end else len(rest)]
            if not FROM_LOCK.search(command):
                unlocked.append(f"{path.relative_to(PROJECT_ROOT)}: {match.group()}{command}")
    assert unlocked == []
    assert installs >= 5  # the scan sees them: the image's three, a version's two, the server's


def test_the_tracking_server_is_locked_with_its_client() -> None:
    """The server group is in uv.lock, at the client's version; a plain `uv sync` leaves it
    out of this environment."""
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    assert [r.split(">")[0] for r in pyproject["dependency-groups"][GROUP]] == ["mlflow"]
    requirements = locked_requirements()
    client = metadata.version("mlflow-skinny")
    assert pinned(requirements, "mlflow") == f"mlflow=={client}"
    assert pinned(requirements, "mlflow-skinny") == f"mlflow-skinny=={client}"
    assert "--hash=sha256:" in requirements  # installed with --require-hashes
    lock = tomllib.loads((PROJECT_ROOT / "uv.lock").read_text())
    locked = {p["name"]: p["version"] for p in lock["package"] if p["name"].startswith("mlflow")}
    assert locked["mlflow"] == locked["mlflow-skinny"] == client


def test_the_image_builds_its_wheel_with_the_locked_backend() -> None:
    lock = tomllib.loads((PROJECT_ROOT / "uv.lock").read_text())
    locked = next(p["version"] for p in lock["package"] if p["name"] == "poetry-core")
    assert pinned_build_backend(PROJECT_ROOT / "pyproject.toml") == [f"poetry-core=={locked}"]
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert "pip install --no-deps -r /tmp/requirements-build.lock" in dockerfile
    assert "--no-build-isolation" in dockerfile


def test_a_versions_requirements_resolve_to_exactly_their_pins(tmp_path: Path) -> None:
    """A version's environment (and its image) installs the requirements published with its
    wheel: every dependency, transitively, pinned. Resolving them adds nothing and moves
    nothing (offline: from what `uv sync` put in uv's cache)."""
    pins = pinned_requirements("{{ cookiecutter.project }}")
    listed = tmp_path / "requirements.lock"
    listed.write_text("\n".join(pins) + "\n")
    uv = find_uv()
    subprocess.run([uv, "venv", "--quiet", str(tmp_path / "env")], check=True)
    python = str(tmp_path / "env" / "bin" / "python")
    command = [uv, "pip", "install", "--dry-run", "--offline", "--python", python, "-r"]
    result = subprocess.run([*command, str(listed)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    would_install = {
        line.removeprefix(" + ") for line in result.stderr.splitlines() if line.startswith(" + ")
    }
    assert would_install == {pin.replace("_", "-") for pin in pins}
