"""The project's own checks: test, lint."""

from __future__ import annotations

import shlex
import sys

from invoke import Context, task


@task(help={"all": "also the slow tests (pipelines, servers): what CI runs", "args": "pytest args"})
def test(c: Context, all_: bool = False, args: str = "") -> None:
    """dev: Run the tests: the fast ones by default (seconds), every one with --all."""
    selection = "" if all_ else "-m 'not slow'"
    # One pytest worker per core (pytest-xdist); the tests share no state. A worker that
    # runs out of tests takes some from the other (worksteal) rather than idling.
    python = shlex.quote(sys.executable)
    # Python caches compiled modules unless PYTHONDONTWRITEBYTECODE is set (CI images often
    # set it): the test processes import pandas, scikit-learn and kfp, cached from the start.
    cache = {"PYTHONDONTWRITEBYTECODE": ""}
    c.run(f"{python} -m pytest -n auto --dist worksteal {selection} {args}", pty=False, env=cache)


@task
def lint(c: Context) -> None:
    """dev: ruff (lint and format check) and mypy."""
    python = shlex.quote(sys.executable)
    c.run(f"{python} -m ruff check .", pty=False)
    c.run(f"{python} -m ruff format --check .", pty=False)
    c.run(f"{python} -m mypy src tasks", pty=False)
