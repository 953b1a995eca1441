"""Jinja extensions of the template: answers kept as text, a guard before the hooks run, and
version filters.

cookiecutter creates the project directory *before* the pre-generation hook validates the
answers, and removes it when the hook fails. A project name such as `..` or `a/../..` names a
directory that already exists, so that removal would delete the user's own files. This
extension makes rendering the project directory's name fail for anything that is not a plain
directory name, so nothing is created; the hook then gives the full verdict on every answer.
"""

from __future__ import annotations

import re

from jinja2 import Environment
from jinja2.exceptions import UndefinedError
from jinja2.ext import Extension

PROJECT_DIR_TEMPLATE = "{{cookiecutter.project}}"
JINJA_MARKUP = ("{{", "{%", "{#")
RAW_BLOCK_PERCENT = """{% endraw %}{{ "{%" }}{% raw %}"""


def plain_directory_name(value: object) -> str:
    name = str(value)
    if name in ("", ".", "..") or any(sep in name for sep in ("/", "\\", "\0")):
        raise UndefinedError(f"ERROR: project: {name!r} is not a plain directory name")
    return name


class ProjectDirGuard(Extension):
    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.filters["plain_directory_name"] = plain_directory_name

    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        if source == PROJECT_DIR_TEMPLATE:
            return "{{ cookiecutter.project | plain_directory_name }}"
        return source


class LiteralAnswers(Extension):
    """An answer is text: `x {{ 7*7 }} y` stays `x {{ 7*7 }} y`.

    cookiecutter renders every value of the context as a template before the hooks see it,
    the answers given on its command line (or replayed by cruft) among them, so Jinja
    syntax in a description was evaluated (`{{ 7*7 }}` became 49) or crashed generation
    with a traceback (`{% tags %}`). Such a value is rendered inside `{% raw %}`. The
    template's own templated values (the defaults of cookiecutter.json, the path names and
    the hooks) all name `cookiecutter`; an answer that does too is rendered as a default
    would be (`bucket={{ cookiecutter.gcp_project }}-data`).
    """

    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        if name is not None or "cookiecutter" in source:
            return source  # a file of the template, or a reference to another answer
        if not any(markup in source for markup in JINJA_MARKUP):
            return source
        # Only `{% endraw %}` ends a raw block: each `{%` is written outside of it.
        return "{% raw %}" + source.replace("{%", RAW_BLOCK_PERCENT) + "{% endraw %}"


def next_minor(version: object) -> str:
    """The version `inv bump --to minor` gives (1.2.3rc1 -> 1.3.0), for the README's examples."""
    match = re.match(r"^(?:[0-9]+!)?([0-9]+)(?:\.([0-9]+))?", str(version))
    if match is None:
        raise UndefinedError(f"ERROR: version: {version!r} is not a PEP 440 version")
    return f"{match[1]}.{int(match[2] or 0) + 1}.0"


class VersionFilters(Extension):
    """`{{ cookiecutter.version | next_minor }}`: examples use the versions the user chose."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.filters["next_minor"] = next_minor
