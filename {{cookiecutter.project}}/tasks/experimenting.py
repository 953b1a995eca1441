"""Experiments: train (Hydra), experiments, tracking-server."""

from __future__ import annotations

import shlex
import sys

from invoke import Context, Exit, task

from .plumbing import PACKAGE, checked_port, user_errors


@task(
    help={
        "override": "Hydra override or sweep, e.g. -o model.max_depth=4,8 (repeatable)",
        "multirun": "sweep over comma-separated override values (Hydra --multirun)",
    },
    iterable=["override"],
)
def train(c: Context, override: list[str] | None = None, multirun: bool = False) -> None:
    """experiments: Train an experiment with Hydra overrides; writes outputs/<version>/<time>/."""
    from {{ cookiecutter.package }}.config import unknown_setting

    hint = unknown_setting("local", override or [])  # before Hydra's own six-line error
    if hint:
        raise Exit(f"error: invalid configuration: {hint}", code=1)
    arguments = [*(override or []), *(["--multirun"] if multirun else [])]
    result = c.run(
        shlex.join([sys.executable, "-m", f"{PACKAGE}.train", *arguments]), pty=False, warn=True
    )
    if result is not None and result.failed:
        raise Exit(code=result.exited)  # the run said why on stderr, in one line


@task(
    help={
        "override": "Hydra override, e.g. -o tracking=mlflow (repeatable)",
        "limit": "show only the best N runs of each test set (default: all)",
        "adopt": "write this run's settings into conf/ (its run column), for the next release",
    },
    iterable=["override"],
)
def experiments(
    c: Context, override: list[str] | None = None, limit: int = 0, adopt: str = ""
) -> None:
    """experiments: Training runs, best first among those scored on the same test set.

    From MLflow when tracking is on (conf/tracking/), else from outputs/ and multirun/.
    --adopt RUN writes what that run changed into the conf/ files that declare it (a group
    option into conf/config.yaml's defaults, a model setting into its model's file) and
    shows the diff: commit it, bump, release."""
    from {{ cookiecutter.package }}.artifacts.tracking import Tracker
    from {{ cookiecutter.package }}.config import load_config
    from {{ cookiecutter.package }}.reports import experiments as report
    from {{ cookiecutter.package }}.version import PROJECT_ROOT

    with user_errors():
        tracker = Tracker.from_config(load_config("local", override or []))
        source = "outputs/" if tracker is None else f"MLflow at {tracker.shown}"
        found = report.find(PROJECT_ROOT) if tracker is None else report.tracked(tracker)
        if not adopt:
            report.show(found, limit, source=source)
            return
        from {{ cookiecutter.package }}.config_writer import adopt as adopt_overrides

        run = report.named(found, adopt)
        git = ["git", "-C", str(PROJECT_ROOT)]
        if c.run(shlex.join([*git, "status", "--porcelain", "--", "conf"]), hide=True).stdout:
            raise Exit("error: conf/ has changes not committed: commit or stash them first, "
                       "so that what is adopted is one diff", code=1)  # fmt: skip
        changes = adopt_overrides(run.overrides)
    if not changes:
        print(f"{run.run} changes nothing in conf/: nothing to adopt")
        return
    print(f"adopted {run.run} ({' '.join(run.overrides)}):")
    print("\n".join(f"  {line}" for line in changes))
    c.run(shlex.join([*git, "--no-pager", "diff", "--", "conf"]))
    print("conf/ is a release input: commit this, then `inv bump` and `inv release`")


@task(
    help={
        "port": "port on 127.0.0.1 (default 5000)",
        "stop": "stop the server this project started",
    }
)
def tracking_server(c: Context, port: str = "5000", stop: bool = False) -> None:
    """experiments: MLflow's tracking server and UI over this project's runs, in the background."""
    from {{ cookiecutter.package }} import tracking_server as server
    from {{ cookiecutter.package }}.version import PROJECT_ROOT

    with user_errors():
        if stop:
            stopped = server.stop_in(PROJECT_ROOT)
            print("tracking server stopped" if stopped else "no tracking server was running")
            return
        started = server.start_in(PROJECT_ROOT, checked_port(port))
    print(f"MLflow tracking server at {started.url} (pid {started.pid}, log {started.log})")
    print(f"log to it: export MLFLOW_TRACKING_URI={started.url}, then -o tracking=mlflow")
