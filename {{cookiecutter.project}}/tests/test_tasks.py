"""The invoke tasks as a user calls them: every one answers --help, version flags are flags."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import pytest
from invoke import Collection, Program

from {{ cookiecutter.package }}.version import PROJECT_ROOT


def inv(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def task_names() -> list[str]:
    listing = json.loads(inv("--list", "--list-format", "json").stdout)
    return [task["name"] for task in listing["tasks"]]


def test_the_documented_tasks_exist() -> None:
    assert {
        "build",
        "train-adhoc",
        "deploy-workflow",
        "release",
        "bump",
        "versions",
        "compare",
        "experiments",
        "run-inference",
        "run-scheduled",
        "traffic",
        "retire",
        "rollback",
        "train",
        "serve",
        "serve-router",
        "render-deployment",
        "test",
        "lint",
    } <= set(task_names())


def help_of(name: str) -> tuple[int, str]:
    """`inv NAME --help` through invoke's own Program, in this process (milliseconds, not
    the half second a new interpreter costs per task); the subprocess tests below cover
    the real command line."""
    sys.path.insert(0, str(PROJECT_ROOT))
    try:
        import tasks
    finally:
        sys.path.remove(str(PROJECT_ROOT))
    program = Program(namespace=Collection.from_module(tasks), binary="inv[oke]")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
        program.run(["inv", name, "--help"])
    return int(exited.value.code or 0), out.getvalue()


@pytest.mark.parametrize("name", task_names())
def test_every_task_answers_help(name: str) -> None:
    code, text = help_of(name)
    assert code == 0
    assert text.startswith(f"Usage: inv[oke] [--core-opts] {name} ")
    assert "Docstring:" in text  # what it does, not only its flags
    assert "[<" not in text.splitlines()[0]  # no positional argument to swallow --help


def test_help_on_the_command_line() -> None:
    result = inv("retire", "--help")
    assert result.returncode == 0 and "--version=STRING" in result.stdout


def test_every_task_says_what_it_does_in_one_line() -> None:
    """`inv --list` shows the first line of each docstring: a whole sentence, not a cut one."""
    listing = json.loads(inv("--list", "--list-format", "json").stdout)
    cut = [t["name"] for t in listing["tasks"] if not t["help"].rstrip().endswith((".", ")"))]
    assert cut == []


@pytest.mark.parametrize(
    "args,message",
    [
        (("retire",), "error: say which version: inv retire --version X.Y.Z"),
        (("rollback",), "error: say which version: inv rollback --to X.Y.Z"),
        (
            ("compare", "--base", "9.9.9", "--new", "9.9.8"),
            "error: version 9.9.9 has no released model on local",
        ),
    ],
)
def test_a_missing_or_unknown_version_is_one_error_line(
    args: tuple[str, ...], message: str, tmp_path
) -> None:
    result = inv(*args, "-o", f"env.artifact_root={tmp_path}")
    assert result.returncode == 1
    assert result.stderr.strip() == message
    assert not any(tmp_path.iterdir())  # nothing written
