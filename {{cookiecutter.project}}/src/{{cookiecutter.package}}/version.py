"""The project's name and its release version, each written in one place.

The name (`PROJECT`: the distribution in pyproject.toml, the image repository, the prefix of
every pipeline, DAG and server name) is this constant; `conf/config.yaml` reads it through
the `${project:}` resolver. The version is written in pyproject.toml only.

In a checkout the file is read on every call (an editable install's package metadata goes
stale after `poetry version patch`). Inside a built image there is no pyproject.toml: the
version baked into the installed wheel's metadata is the version of that image.
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

PROJECT = "{{ cookiecutter.project }}"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def pyproject_path() -> Path | None:
    """This project's pyproject.toml when running from a checkout, else None."""
    candidate = PROJECT_ROOT / "pyproject.toml"
    if not candidate.is_file():
        return None
    with candidate.open("rb") as handle:
        name = tomllib.load(handle).get("project", {}).get("name")
    return candidate if name == PROJECT else None


def read_version() -> str:
    path = pyproject_path()
    if path is not None:
        with path.open("rb") as handle:
            return str(tomllib.load(handle)["project"]["version"])
    return metadata.version(PROJECT)
