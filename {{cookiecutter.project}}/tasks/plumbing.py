"""What every task module shares: the flags' help, one-line errors, the release context."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from invoke import Exit

OVERRIDE_HELP = {
    "override": "Hydra override, e.g. -o model.max_depth=6 (repeatable)",
    "env": "environment: local (default), dev, prod or airflow",
}
INTERVAL_HELP = {
    "start": "the run's data interval starts here (ISO date or time; default: see the task)",
    "end": "and ends here, excluded (default: now)",
}
PACKAGE = "{{ cookiecutter.package }}"


@contextmanager
def user_errors() -> Iterator[None]:
    """Known failures become one `error:` line and exit code 1, never a traceback."""
    from {{ cookiecutter.package }}.errors import UserError

    try:
        yield
    except UserError as error:
        raise Exit(f"error: {readable(str(error))}", code=1) from None


def readable(message: str) -> str:
    """One line, whatever a refused value held: newlines go, and any run of more than 120
    characters without a space (a pasted blob, not a path) is cut in its middle."""

    def cut(match: re.Match[str]) -> str:
        text = match.group()
        return f"{text[:60]}...{text[-20:]} ({len(text)} characters)"

    return re.sub(r"\S{121,}", cut, " ".join(message.split()))


def checked_port(value: str) -> int:
    """A TCP port from a flag. Taken as text: invoke's own int() would end in a traceback."""
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise Exit(f"error: invalid port {value!r}: use a number from 1 to 65535", code=1)
    return int(value)


@contextmanager
def release_context(env: str, override: list[str] | None, version: str | None = None):
    with user_errors():
        from {{ cookiecutter.package }}.config import load_config
        from {{ cookiecutter.package }}.release.context import ReleaseContext

        yield ReleaseContext.create(load_config(env, override or []), version)
