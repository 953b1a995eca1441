"""The invoke tasks as a user calls them: every one answers --help, version flags are flags,
errors are one line, progress is one line per task."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time

import pytest
from conftest import inv_here
from invoke import Collection

from {{ cookiecutter.package }}.progress import Activity
from {{ cookiecutter.package }}.version import PROJECT_ROOT


def inv(*args: str) -> subprocess.CompletedProcess[str]:
    """`inv ARGS` on the real command line, in a new interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def task_names() -> list[str]:
    sys.path.insert(0, str(PROJECT_ROOT))
    try:
        import tasks
    finally:
        sys.path.remove(str(PROJECT_ROOT))
    return sorted(Collection.from_module(tasks).task_names)


# Every task as `inv --list` named it when tasks.py became the tasks/ package: the README,
# the CI workflows and people's muscle memory use these names.
RECORDED_TASKS = [
    "ab", "build", "bump", "check-bump", "compare", "deploy-workflow", "down", "drift",
    "experiments", "gc", "lint", "release", "render-deployment", "retire", "revive",
    "rollback", "run-inference", "run-scheduled", "sample-data", "serve", "serve-router",
    "test", "tracking-server", "traffic", "train", "train-adhoc", "up", "versions", "workers",
]  # fmt: skip


def test_every_recorded_task_name_still_resolves(listing: dict) -> None:
    assert sorted(task["name"] for task in listing["tasks"]) == RECORDED_TASKS
    concerns = {task["help"].split(":", 1)[0] for task in listing["tasks"]}
    assert concerns == {"release", "traffic", "runs", "serving", "experiments", "ops", "dev"}


@pytest.fixture(scope="module")
def listing() -> dict:
    """`inv --list --list-format json` on the real command line, once for the module."""
    return json.loads(inv("--list", "--list-format", "json").stdout)


def test_the_documented_tasks_exist(listing: dict) -> None:
    assert {
        "build",
        "train-adhoc",
        "deploy-workflow",
        "release",
        "bump",
        "versions",
        "compare",
        "experiments",
        "tracking-server",
        "workers",
        "run-inference",
        "run-scheduled",
        "sample-data",
        "traffic",
        "retire",
        "rollback",
        "train",
        "serve",
        "serve-router",
        "up",
        "down",
        "gc",
        "drift",
        "render-deployment",
        "test",
        "lint",
    } <= {task["name"] for task in listing["tasks"]}
    assert sorted(task["name"] for task in listing["tasks"]) == task_names()


@pytest.mark.parametrize("name", task_names())
def test_every_task_answers_help(name: str) -> None:
    code, text, _ = inv_here(name, "--help")
    assert code == 0
    assert text.startswith(f"Usage: inv[oke] [--core-opts] {name} ")
    assert "Docstring:" in text  # what it does, not only its flags
    assert "[<" not in text.splitlines()[0]  # no positional argument to swallow --help


def test_help_on_the_command_line() -> None:
    result = inv("retire", "--help")
    assert result.returncode == 0 and "--version=STRING" in result.stdout


def test_every_task_says_what_it_does_in_one_line(listing: dict) -> None:
    """`inv --list` shows the first line of each docstring: a whole sentence, not a cut one."""
    cut = [t["name"] for t in listing["tasks"] if not t["help"].rstrip().endswith((".", ")"))]
    assert cut == []


@pytest.mark.parametrize(
    "args,message",
    [
        (("retire",), "error: say which version: inv retire --version X.Y.Z"),
        (("rollback",), "error: say which version: inv rollback --to X.Y.Z"),
        (("revive",), "error: say which version: inv revive --version X.Y.Z"),
        (
            ("revive", "--version", "9.9.9"),
            "error: version 9.9.9 has no deployed workflows on local",
        ),
        (
            ("compare", "--base", "9.9.9", "--new", "9.9.8"),
            "error: version 9.9.9 has no released model on local",
        ),
    ],
)
def test_a_missing_or_unknown_version_is_one_error_line(
    args: tuple[str, ...], message: str, tmp_path
) -> None:
    code, _, err = inv_here(*args, "-o", f"env.artifact_root={tmp_path}")
    assert code == 1
    assert err.strip() == message
    assert not any(tmp_path.iterdir())  # nothing written


def test_a_refusal_on_the_command_line_is_one_line_and_exit_code_1(tmp_path) -> None:
    result = inv("compare", "--base", "9.9.9", "--new", "9.9.8", "-o",
                 f"env.artifact_root={tmp_path}")  # fmt: skip
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip() == "error: version 9.9.9 has no released model on local"
    assert not any(tmp_path.iterdir())


def test_the_router_refuses_to_start_without_a_server_for_a_live_cluster(tmp_path) -> None:
    """The README's snippet once named a retired version's server: the router started, and
    answered the live clusters' trips 503. It refuses at start, in one line."""
    from {{ cookiecutter.package }}.artifacts import traffic
    from {{ cookiecutter.package }}.artifacts.store import open_store

    traffic.record(open_store(str(tmp_path)), {"1.0.0": range(4), "2.0.0": range(4, 8)}, 8,
                   live=["1.0.0", "2.0.0"], reason="A/B")  # fmt: skip
    code, out, err = inv_here(
        "serve-router", "--upstream", "1.0.0=http://127.0.0.1:9", "--upstream",
        "0.9.0=http://127.0.0.1:9", "-o", f"env.artifact_root={tmp_path}",
    )  # fmt: skip
    assert code == 1 and out == ""
    assert err.strip() == (
        "error: version 2.0.0 serves user clusters 4-7 but no server is named for it: start "
        "one (`inv serve --version 2.0.0`) and add --upstream 2.0.0=URL"
    )


def test_inv_up_without_a_live_version_refuses_and_starts_nothing(tmp_path) -> None:
    code, out, err = inv_here("up", "-o", f"env.artifact_root={tmp_path}")
    assert code == 1 and out == ""
    assert err.strip() == "error: no live version on local: release one first (`inv release`)"
    assert not any(tmp_path.iterdir())


def test_inv_down_stops_what_was_recorded_and_never_a_reused_pid(tmp_path) -> None:
    """`inv down` ends each recorded process with its children (its session); a recorded pid
    whose process started at another time than recorded (the system gave the pid to another
    process) is left alone."""
    from {{ cookiecutter.package }}.background import spawn, started_at
    from {{ cookiecutter.package }}.release import local_servers

    shell = spawn(["bash", "-c", "sleep 300 & wait"], tmp_path / "shell.log")
    other = spawn(["sleep", "300"], tmp_path / "other.log")
    try:
        entries = [
            local_servers.Started("1.0.0", 9, shell.pid, started_at(shell.pid) or 0, "log"),
            local_servers.Started("2.0.0", 9, other.pid, (started_at(other.pid) or 0) + 1, "l"),
        ]
        local_servers._record(tmp_path, entries)
        time.sleep(0.2)  # the shell's child is started
        child = int(subprocess.check_output(["pgrep", "-P", str(shell.pid)]).split()[0])
        lines = local_servers.down(tmp_path)
        assert lines == [
            f"stopped 1.0.0 (pid {shell.pid}, port 9)",
            f"2.0.0 (pid {other.pid}) had ended already",
        ]
        assert shell.wait(timeout=5) is not None and started_at(child) is None
        assert other.poll() is None  # not the recorded process: never signalled
        assert not local_servers.record_path(tmp_path).exists()
    finally:
        other.kill()
        other.wait()


def test_a_typo_in_an_experiments_override_is_one_line_naming_the_setting() -> None:
    code, out, err = inv_here("train", "-o", "model.max_dept=4")  # before Hydra starts
    assert code == 1 and out == ""
    assert err.strip() == (
        "error: invalid configuration: model has no setting 'max_dept': did you mean "
        "model.max_depth? (+model.max_dept=... adds a new one)"
    )


@pytest.mark.parametrize(
    "override", ["data_source.batch_path=today/*.parquet", "+model.max_depth=4", "seed=3"]
)
def test_run_scheduled_refuses_settings_its_released_workflows_would_ignore(
    override: str, tmp_path
) -> None:
    code, out, err = inv_here(
        "run-scheduled", "-o", f"env.artifact_root={tmp_path}", "-o", override
    )
    assert code == 1 and out == ""
    assert err.strip() == (
        f"error: -o {override}: scheduled runs use the configuration each version was "
        "released with (its compiled workflow); what a run may be given is its interval "
        "(--start/--end) and env.* settings, which say where the versions are. Release a new "
        "version to change it"
    )
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "args",
    [
        ("traffic", "--assign", "0.1.0=" + "9" * 10_000),
        ("traffic", "--assign", "9" * 10_000 + "=1"),
        ("traffic", "--all", "1." * 5_000),
        ("retire", "--version", "x" * 10_000),
        ("run-inference", "--run-id", "r" * 10_000),
    ],
)
def test_a_huge_value_is_one_short_error_line(args: tuple[str, ...], tmp_path) -> None:
    code, out, err = inv_here(*args, "-o", f"env.artifact_root={tmp_path}")
    assert code == 1 and out == ""
    (line,) = err.splitlines()
    assert line.startswith("error: ") and len(line) < 300 and "characters)" in line
    assert not any(tmp_path.iterdir())


def test_progress_is_plain_lines_off_a_terminal() -> None:
    out = io.StringIO()
    activity = Activity("  task train-model", out=out)
    activity.done("success")
    lines = out.getvalue().splitlines()
    assert lines[0] == "  task train-model: running"
    assert re.fullmatch(r"  task train-model: success \(\d+\.\d s\)", lines[1])


def test_progress_on_a_terminal_ends_with_the_same_final_line() -> None:
    leader, follower = os.openpty()
    with os.fdopen(follower, "w") as terminal:
        assert terminal.isatty()
        Activity("  task train-model", out=terminal).done("success")
    shown = b""
    while chunk := _read_available(leader):
        shown += chunk
    os.close(leader)
    text = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", shown).decode()
    assert re.search(r"  task train-model: success \(\d+\.\d s\)", text), text


def _read_available(fd: int) -> bytes:
    import select

    ready, _, _ = select.select([fd], [], [], 0.2)
    try:
        return os.read(fd, 65536) if ready else b""
    except OSError:  # EIO: the terminal's other end is closed and everything was read
        return b""
