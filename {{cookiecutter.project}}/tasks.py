"""Release and development tasks: `inv --list`, `inv release`, `inv train -o model.max_depth=6`.

Each task turns flags into a call of the package; heavy imports (kfp, google-cloud-storage,
scikit-learn) happen inside the tasks, so `inv --list` stays as fast as bare invoke.
Every task takes `--env local|dev|prod|airflow` and Hydra overrides (`-o key=value`, repeatable).
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from invoke import Context, Exit, task

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
def _user_errors() -> Iterator[None]:
    """Known failures become one `error:` line and exit code 1, never a traceback."""
    from {{ cookiecutter.package }}.errors import UserError

    try:
        yield
    except UserError as error:
        raise Exit(f"error: {_readable(str(error))}", code=1) from None


def _readable(message: str) -> str:
    """One line, whatever a refused value held: newlines go, and any run of more than 120
    characters without a space (a pasted blob, not a path) is cut in its middle."""

    def cut(match: re.Match[str]) -> str:
        text = match.group()
        return f"{text[:60]}...{text[-20:]} ({len(text)} characters)"

    return re.sub(r"\S{121,}", cut, " ".join(message.split()))


def _port(value: str) -> int:
    """A TCP port from a flag. Taken as text: invoke's own int() would end in a traceback."""
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise Exit(f"error: invalid port {value!r}: use a number from 1 to 65535", code=1)
    return int(value)


@contextmanager
def _release_context(env: str, override: list[str] | None, version: str | None = None):
    with _user_errors():
        from {{ cookiecutter.package }}.config import load_config
        from {{ cookiecutter.package }}.release.context import ReleaseContext

        yield ReleaseContext.create(load_config(env, override or []), version)


@task(help={**OVERRIDE_HELP, "dry_run": "print the commands, build nothing"}, iterable=["override"])
def build(
    c: Context, env: str = "local", override: list[str] | None = None, dry_run: bool = False
) -> None:
    """Build the image {registry}/{project}:{version} and push it (skipped if it exists)."""
    from {{ cookiecutter.package }}.release import image
    from {{ cookiecutter.package }}.release.plan import make_steps

    with _release_context(env, override) as ctx:
        if dry_run:
            image.build(ctx, dry_run=True)  # the tags and the builder's commands
        else:
            make_steps(ctx, ctx.git.head(), only=["build"])


@task(help={"to": "patch, minor, major or an explicit version such as 1.4.0"})
def bump(c: Context, to: str = "patch") -> None:
    """Set the next version in pyproject.toml, refresh the lock, commit `Release X.Y.Z`."""
    from {{ cookiecutter.package }}.release.bump import bump as run
    from {{ cookiecutter.package }}.version import PROJECT_ROOT

    with _user_errors():
        print(f"version {run(PROJECT_ROOT, to)} committed: `inv release` releases it")


@task(help=OVERRIDE_HELP, iterable=["override"])
def train_adhoc(c: Context, env: str = "local", override: list[str] | None = None) -> None:
    """Run this version's training pipeline once, with its own code, and wait for it.

    Features, model and metrics. Publishes the version's code first (its wheel, from HEAD).
    """
    from {{ cookiecutter.package }}.release.plan import make_steps

    with _release_context(env, override) as ctx:
        make_steps(ctx, ctx.git.head(), only=["code", "train-adhoc"])


@task(help=OVERRIDE_HELP, iterable=["override"])
def deploy_workflow(c: Context, env: str = "local", override: list[str] | None = None) -> None:
    """Compile this version's training and inference pipelines, register and schedule them."""
    from {{ cookiecutter.package }}.release.lifecycle import keep_newest_live
    from {{ cookiecutter.package }}.release.plan import make_steps

    with _release_context(env, override) as ctx:
        make_steps(ctx, ctx.git.head(), only=["deploy-workflow"])
        keep_newest_live(ctx)


@task(
    help={
        **OVERRIDE_HELP,
        "dry_run": "print the plan (what exists, what would be created)",
        "skip_released": "exit 0 when the version is released with HEAD's release inputs "
        "(CD on merge); a change under it is still refused",
    },
    iterable=["override"],
)
def release(
    c: Context,
    env: str = "local",
    override: list[str] | None = None,
    dry_run: bool = False,
    skip_released: bool = False,
) -> None:
    """Release this version: tag, build, code, train-adhoc, deploy-workflow, traffic, record.

    Preflight checks come first; each step skips what exists, so a rerun finishes a release.
    """
    from {{ cookiecutter.package }}.release.plan import release as run
    from {{ cookiecutter.package }}.release.preflight import check_released_unchanged, is_released

    with _release_context(env, override) as ctx:
        if skip_released and is_released(ctx):
            check_released_unchanged(ctx)
            print(f"version {ctx.names.version} is already released on {env}: nothing to do")
            return
        run(ctx, dry_run=dry_run)


@task
def check_bump(c: Context) -> None:
    """Fail when HEAD changes the release inputs of an already released (tagged) version.

    Run by CI on pull requests: a change to src/, conf/, pyproject.toml, the lock or the
    Dockerfile needs `inv bump`; README, tests and CI files do not.
    """
    from {{ cookiecutter.package }}.release.git import Git
    from {{ cookiecutter.package }}.release.inputs import check_bump as run
    from {{ cookiecutter.package }}.version import PROJECT_ROOT, read_version

    with _user_errors():
        print(run(Git(PROJECT_ROOT), read_version()))


@task(
    help={
        **OVERRIDE_HELP,
        "version": "version to run (default: this checkout's)",
        "run_id": "name of the predictions file (default: time-based)",
        **INTERVAL_HELP,
    },
    iterable=["override"],
)
def run_inference(
    c: Context,
    env: str = "local",
    override: list[str] | None = None,
    version: str | None = None,
    run_id: str = "",
    start: str = "",
    end: str = "",
) -> None:
    """Run a released version's batch-inference pipeline once, on the trips of an interval."""
    from {{ cookiecutter.package }}.release.ticks import run_inference as run

    with _release_context(env, override, version) as ctx:
        run(ctx, run_id, start, end)


@task(
    help={
        **OVERRIDE_HELP,
        "workflow": "training or inference (default)",
        **INTERVAL_HELP,
        "rerun": "predict again what a version already predicted of the interval",
    },
    iterable=["override"],
)
def run_scheduled(
    c: Context,
    workflow: str = "inference",
    env: str = "local",
    override: list[str] | None = None,
    start: str = "",
    end: str = "",
    rerun: bool = False,
) -> None:
    """Fire every enabled local schedule once, each version with its own code (cron it).

    An inference tick predicts the trips since the last tick (or of --start/--end), one
    tick at a time (a second exits in one line). After it, the guard demotes any version
    that is worse than the control.
    """
    from {{ cookiecutter.package }}.release.ticks import run_scheduled as run

    if workflow not in ("training", "inference"):
        raise Exit(f"error: unknown workflow {workflow!r}: use training or inference", code=1)
    released_settings = [o for o in override or [] if not o.lstrip("+~").startswith("env.")]
    if released_settings:  # they would be ignored: the compiled workflows hold the config
        raise Exit(
            f"error: -o {released_settings[0]}: scheduled runs use the configuration each "
            "version was released with (its compiled workflow); what a run may be given is "
            "its interval (--start/--end) and env.* settings, which say where the versions "
            "are. Release a new version to change it",
            code=1,
        )
    with _release_context(env, override) as ctx:
        run(ctx, workflow, start, end, rerun)  # type: ignore[arg-type]
        if workflow == "inference":  # demote what the new outcomes show to be worse
            from {{ cookiecutter.package }}.release.promotion import guard

            guard(ctx)


@task(
    help={**OVERRIDE_HELP, "where": "instead: where each version's features and predictions are"},
    iterable=["override"],
)
def versions(
    c: Context, env: str = "local", override: list[str] | None = None, where: bool = False
) -> None:
    """Every version and what exists for it, with each metric's change from the previous one.

    Image, code, features, the model's metrics, workflows, schedules, predictions, released.
    """
    from {{ cookiecutter.package }}.reports import versions as report

    with _release_context(env, override) as ctx:
        if where:
            report.where(ctx)
        else:
            report.show(ctx)


@task(
    help={
        **OVERRIDE_HELP,
        "base": "the version to compare against (default: the one released before --new)",
        "new": "the version to compare (default: this checkout's)",
        "html": "also write a self-contained page with plots to this file",
    },
    iterable=["override"],
)
def compare(
    c: Context,
    base: str = "",
    new: str = "",
    html: str = "",
    env: str = "local",
    override: list[str] | None = None,
) -> None:
    """Two released versions side by side: metrics, config diff, predictions on one batch.

    The predictions are computed on one fixed, labelled batch by each version's own code.
    """
    from pathlib import Path

    from {{ cookiecutter.package }}.reports import compare as report

    with _release_context(env, override) as ctx:
        comparison = report.compare(ctx, base, new)
        report.show(comparison)
        if html:
            from {{ cookiecutter.package }}.reports.html import write

            print(f"report: {write(Path(html), comparison, str(ctx.cfg.project))}")


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
    """Training runs, best first among those scored on the same test set.

    From MLflow when tracking is on (conf/tracking/), else from outputs/ and multirun/.
    --adopt RUN writes what that run changed into the conf/ files that declare it (a group
    option into conf/config.yaml's defaults, a model setting into its model's file) and
    shows the diff: commit it, bump, release."""
    from {{ cookiecutter.package }}.artifacts.tracking import Tracker
    from {{ cookiecutter.package }}.config import load_config
    from {{ cookiecutter.package }}.reports import experiments as report
    from {{ cookiecutter.package }}.version import PROJECT_ROOT

    with _user_errors():
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
        **OVERRIDE_HELP,
        "assign": "VERSION=CLUSTERS moves clusters to a live version, e.g. 0.2.0=4-7 (repeatable)",
        "all": "VERSION gets every user cluster (blue/green switch)",
        "promote": "VERSION moves one step along release.promotion_steps if it passes the gates",
        "force": "with --promote and --reason: promote although the gates refuse",
        "guard": "give the clusters of every version worse than the control back to it",
        "history": "print every change, oldest first, with the evidence of each decision",
        "reason": "why (recorded with your name and the time)",
    },
    iterable=["override", "assign"],
)
def traffic(
    c: Context,
    assign: list[str] | None = None,
    all_: str = "",
    promote: str = "",
    force: bool = False,
    guard: bool = False,
    history: bool = False,
    reason: str = "",
    env: str = "local",
    override: list[str] | None = None,
) -> None:
    """Show or move which live version serves which user clusters (A/B, canary, blue/green).

    Show it, move clusters to a version, switch everything, promote a version on its A/B
    verdict, or demote the versions that are worse. Every change is recorded.
    """
    from {{ cookiecutter.package }}.artifacts import traffic as records
    from {{ cookiecutter.package }}.release import traffic_moves as run

    moves = [
        name
        for name, given in (
            ("--assign", assign),
            ("--all", all_),
            ("--promote", promote),
            ("--guard", guard),
        )
        if given
    ]
    if len(moves) > 1:
        raise Exit(f"error: use one of {', '.join(moves)}", code=1)
    if force and not promote:
        raise Exit("error: --force goes with --promote VERSION", code=1)
    with _release_context(env, override) as ctx:
        if history:
            print(run.describe_history(ctx))
            return
        if assign:
            run.assign(ctx, assign, reason)
        elif all_:
            run.switch(ctx, all_, reason)
        elif promote or guard:
            from {{ cookiecutter.package }}.release import promotion

            if promote:
                promotion.promote(ctx, promote, force, reason)
            else:
                promotion.guard(ctx)
        print(run.describe(ctx, records.current(ctx.store)))


@task(
    help={
        **OVERRIDE_HELP,
        "control": "the version to compare against (default: the one serving most clusters)",
        "since": "outcomes observed since this ISO date or time (default: each candidate's "
        "release)",
        "html": "also write the verdicts as a self-contained page to this file",
    },
    iterable=["override"],
)
def ab(
    c: Context,
    control: str = "",
    since: str = "",
    html: str = "",
    env: str = "local",
    override: list[str] | None = None,
) -> None:
    """Paired A/B verdicts of each live version against the control, on real outcomes.

    Paired comparison on outcomes (every live version predicts every trip, in shadow when it
    does not serve it): n, MAE and bias of each, the MAE difference with its interval, per
    user cluster and overall, and a verdict: better, worse, equivalent or inconclusive.
    """
    from pathlib import Path

    from {{ cookiecutter.package }}.release.evidence import compare_live
    from {{ cookiecutter.package }}.reports import ab as report

    with _release_context(env, override) as ctx:
        comparisons = compare_live(ctx, control, since)
        report.show(comparisons, ctx.env)
        if html:
            page = report.write(Path(html), comparisons, str(ctx.cfg.project), ctx.env)
            print(f"report: {page}")


@task(
    help={
        **OVERRIDE_HELP,
        "version": "only this version (default: every live version)",
        "since": "from this date or time, UTC (default: drift.since_hours ago)",
        "html": "also write each column's two distributions as a page to this file",
        "json": "print every call as JSON (version, group, column, distance, p-value, drift)",
    },
    iterable=["override"],
)
def drift(
    c: Context,
    version: str = "",
    since: str = "",
    html: str = "",
    json: bool = False,
    env: str = "local",
    override: list[str] | None = None,
) -> None:
    """What live versions were asked to predict, against their training data (no outcomes).

    Per input and for the predictions, overall and per user cluster: the normalised
    Wasserstein distance (numeric) or the Jensen-Shannon distance (categorical) of the runs
    since --since against the reference stored with the model, and a chi-square test;
    drift when the move is beyond noise (Holm-adjusted) and beyond the threshold.
    """
    from pathlib import Path

    from {{ cookiecutter.package }}.reports import drift_report as report

    with _release_context(env, override) as ctx:
        found = report.measure(ctx, version, since)
        if json:
            import json as json_module

            print(json_module.dumps(report.calls(found), indent=1))
        else:
            report.show(found)
        if html:
            print(f"report: {report.write(Path(html), found, str(ctx.cfg.project))}")


@task(
    help={**OVERRIDE_HELP, "version": "version whose schedules to disable (required)"},
    iterable=["override"],
)
def retire(
    c: Context, version: str = "", env: str = "local", override: list[str] | None = None
) -> None:
    """Disable (never delete) a version's recurring runs; refused while it serves clusters."""
    from {{ cookiecutter.package }}.release.lifecycle import retire as run

    if not version:
        raise Exit("error: say which version: inv retire --version X.Y.Z", code=1)
    with _release_context(env, override) as ctx:
        run(ctx, version)


@task(
    help={**OVERRIDE_HELP, "version": "retired version to make live again (required)"},
    iterable=["override"],
)
def revive(
    c: Context, version: str = "", env: str = "local", override: list[str] | None = None
) -> None:
    """Make a retired version live again, with no user clusters (then `inv traffic`)."""
    from {{ cookiecutter.package }}.release.lifecycle import revive as run

    if not version:
        raise Exit("error: say which version: inv revive --version X.Y.Z", code=1)
    with _release_context(env, override) as ctx:
        run(ctx, version)


@task(
    help={**OVERRIDE_HELP, "apply": "tombstone, and sweep tombstones past the grace period"},
    iterable=["override"],
)
def gc(
    c: Context, apply: bool = False, env: str = "local", override: list[str] | None = None
) -> None:
    """What retention removes of retired versions (conf/retention/): a dry run by default.

    With --apply, versions outside the keep set are tombstoned (what will go, with sha256
    and bytes); a tombstone older than retention.grace_days is swept, the keep set computed
    again before each removal, each removal recorded under retention/audit/.
    """
    from {{ cookiecutter.package }}.release.retention import gc as run
    from {{ cookiecutter.package }}.reports.retention_report import describe

    with _release_context(env, override) as ctx:
        for line in describe(run(ctx, apply), apply):
            print(line)


@task(help={**OVERRIDE_HELP, "to": "version to make live again (required)"}, iterable=["override"])
def rollback(
    c: Context, to: str = "", env: str = "local", override: list[str] | None = None
) -> None:
    """Make version TO live again and disable the newer versions (traffic moves back too).

    TO's schedules are re-enabled, its user clusters and those of every newer version move
    back to it, and the newer versions' schedules are disabled.
    """
    from {{ cookiecutter.package }}.release.lifecycle import rollback as run

    if not to:
        raise Exit("error: say which version: inv rollback --to X.Y.Z", code=1)
    with _release_context(env, override) as ctx:
        run(ctx, to)


@task(
    help={
        "out": "folder to write into (created; existing files are never overwritten)",
        "rows": "training trips (default 2000)",
        "format": "parquet (default) or csv",
        "with_outcomes": "also a week of daily partitions of trips to predict (batch/dt=.../) "
        "and of their actual durations (outcomes/dt=.../)",
    }
)
def sample_data(
    c: Context,
    out: str = "",
    rows: str = "2000",
    format_: str = "parquet",
    with_outcomes: bool = False,
) -> None:
    """Write sample trips in the shape the data sources read, and print the schema."""
    from pathlib import Path

    from {{ cookiecutter.package }}.artifacts.sample_data import write_sample
    from {{ cookiecutter.package }}.ml.schema import schema_table

    if not out:
        raise Exit("error: name the folder to write into: --out DIR", code=1)
    if not rows.isdigit():  # taken as text: invoke's own int() would end in a traceback
        raise Exit(f"error: invalid --rows {rows!r}: use a whole number", code=1)
    with _user_errors():
        written = write_sample(Path(out), int(rows), format_, with_outcomes)
    partitions: dict[Path, list[str]] = {}
    for path in written:
        if path.parent == Path(out):
            print(f"wrote {path}")
        else:  # batch/dt=.../trips.parquet: one line per partitioned folder
            partitions.setdefault(path.parent.parent, []).append(path.parent.name)
    for folder, days in partitions.items():
        print(f"wrote {folder}/: {len(days)} daily partitions, {days[0]} to {days[-1]}")
    print(f"\nwhat a trip holds (ml/schema.py):\n{schema_table()}")


@task(
    help={
        "override": "Hydra override or sweep, e.g. -o model.max_depth=4,8 (repeatable)",
        "multirun": "sweep over comma-separated override values (Hydra --multirun)",
    },
    iterable=["override"],
)
def train(c: Context, override: list[str] | None = None, multirun: bool = False) -> None:
    """Train an experiment with Hydra overrides; writes outputs/<version>/<time>/."""
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
        **OVERRIDE_HELP,
        "version": "version to serve (default: this checkout's)",
        "port": "port on 127.0.0.1",
    },
    iterable=["override"],
)
def serve(
    c: Context,
    version: str | None = None,
    port: str = "8080",
    env: str = "local",
    override: list[str] | None = None,
) -> None:
    """Serve one released version's model at POST /v{version}/predict, with its own code."""
    port_number = _port(port)
    import os

    from {{ cookiecutter.package }}.serving.app import serve_command

    with _release_context(env, override, version) as ctx:
        python = ctx.environments.python_for(ctx.names)
    command, environment = serve_command(python, ctx.names, port=port_number)
    sys.stdout.flush()
    os.execve(command[0], command, environment)  # the server replaces this process


@task(
    help={
        **OVERRIDE_HELP,
        "port": "port on 127.0.0.1",
        "upstream": "VERSION=URL of a version's server, e.g. 0.1.0=http://127.0.0.1:8081 "
        "(repeatable; others: serving.upstream_url)",
    },
    iterable=["override", "upstream"],
)
def serve_router(
    c: Context,
    port: str = "8000",
    upstream: list[str] | None = None,
    env: str = "local",
    override: list[str] | None = None,
) -> None:
    """Serve POST /predict: each trip goes to the live version serving its user cluster."""
    port_number = _port(port)
    with _release_context(env, override) as ctx:
        from {{ cookiecutter.package }}.serving import router

        explicit = dict(spec.split("=", 1) for spec in upstream or [] if "=" in spec)
        if len(explicit) != len(upstream or []):
            raise Exit("error: write --upstream VERSION=URL", code=1)
        if explicit or ctx.env == "local":  # servers named by hand: each live one needed
            from {{ cookiecutter.package }}.artifacts import traffic

            unserved = router.unserved_clusters(traffic.current(ctx.store), explicit)
            if unserved:
                raise Exit(f"error: {unserved}", code=1)
        app = router.create_router(
            ctx.names.artifact_root,
            router.upstreams(str(ctx.cfg.serving.upstream_url), explicit, ctx.names.artifact_root),
            refresh_s=float(ctx.cfg.serving.traffic_refresh_seconds),
            timeout_s=float(ctx.cfg.serving.upstream_timeout_seconds),
            # traffic.shadow: the other live versions answer too, recorded as shadow rows.
            shadow_sink=ctx.predictions if ctx.cfg.traffic.shadow else None,
            shadow_versions=explicit,
            shadow_flush_s=float(ctx.cfg.serving.shadow_flush_seconds),
        )
    router.serve(app, port=port_number)


@task(
    help={**OVERRIDE_HELP, "status": "show what `inv up` started and whether each answers"},
    iterable=["override"],
)
def up(
    c: Context, env: str = "local", override: list[str] | None = None, status: bool = False
) -> None:
    """Serve every live version (each in its own environment) and the router, in the background.

    Ports: `serving.local.first_port` and up for the versions, oldest first, and
    `serving.local.router_port` for the router. Logs in .serving/logs/; `inv down` stops them.
    """
    from {{ cookiecutter.package }}.release import local_servers
    from {{ cookiecutter.package }}.version import PROJECT_ROOT

    if status:
        print("\n".join(local_servers.status(PROJECT_ROOT)))
        return
    with _release_context(env, override) as ctx:
        started = local_servers.up(ctx, override or [])
    for process in started:
        where = (
            f"{process.url}/predict"
            if process.name == "router"
            else (f"{process.url}/v{process.name}/predict")
        )
        print(f"{process.name:<10} {where}  (pid {process.pid}, log {process.log})")


@task
def down(c: Context) -> None:
    """Stop exactly what `inv up` started."""
    from {{ cookiecutter.package }}.release import local_servers
    from {{ cookiecutter.package }}.version import PROJECT_ROOT

    print("\n".join(local_servers.down(PROJECT_ROOT)))


@task(
    help={
        **OVERRIDE_HELP,
        "version": "version to deploy (default: this checkout's)",
        "router": "render the router (POST /predict for every live version) instead",
    },
    iterable=["override"],
)
def render_deployment(
    c: Context,
    version: str | None = None,
    router: bool = False,
    env: str = "local",
    override: list[str] | None = None,
) -> None:
    """Write a version's Kubernetes manifests (or the router's) to deploy/rendered/<env>/.

    deploy/rendered/<env>/<version>.yaml holds the Deployment, Service and Ingress of that
    version; with --router, deploy/rendered/<env>/router.yaml. The folder is ignored by git:
    apply it, or commit it to a GitOps repository.
    """
    from {{ cookiecutter.package }}.release import deployment

    with _release_context(env, override, version) as ctx:
        deploy = ctx.project_root / "deploy"
        out = deploy / "rendered" / ctx.env
        print(deployment.write(ctx.names, deploy / "base", out, router=router))


@task(
    help={
        "stop": "end this checkout's workers (and any run in them)",
        "all": "every checkout's workers of this project on this machine, not only this one's",
    }
)
def workers(c: Context, stop: bool = False, all_: bool = False) -> None:
    """List this checkout's warm workers of released versions (local runs fork from them).

    --stop ends them; --all acts on every checkout's of this project on the machine. A
    worker exits by itself after `env.worker_idle_seconds` without a run.
    """
    import time

    from {{ cookiecutter.package }}.engines.workers import stop_workers
    from {{ cookiecutter.package }}.engines.workers import workers as alive

    if stop:
        stopped = stop_workers(everywhere=all_)
        print(f"stopped {len(stopped)} worker{'s' if len(stopped) != 1 else ''}")
        return
    found = alive(everywhere=all_)
    if not found:
        print("no workers: the next local run of a released version starts one")
    for worker in found:
        age = time.time() - worker["started"]
        print(
            f"pid {worker['pid']}  {worker['python']}  up {age:.0f} s, idle "
            f"{worker['idle_s']:.0f} s, {worker['runs']} run(s) now"
        )


@task(
    help={
        "port": "port on 127.0.0.1 (default 5000)",
        "stop": "stop the server this project started",
    }
)
def tracking_server(c: Context, port: str = "5000", stop: bool = False) -> None:
    """MLflow's tracking server and UI over this project's runs (mlflow.db), in the background."""
    from {{ cookiecutter.package }} import tracking_server as server
    from {{ cookiecutter.package }}.version import PROJECT_ROOT

    with _user_errors():
        if stop:
            stopped = server.stop_in(PROJECT_ROOT)
            print("tracking server stopped" if stopped else "no tracking server was running")
            return
        started = server.start_in(PROJECT_ROOT, _port(port))
    print(f"MLflow tracking server at {started.url} (pid {started.pid}, log {started.log})")
    print(f"log to it: export MLFLOW_TRACKING_URI={started.url}, then -o tracking=mlflow")


@task(help={"all": "also the slow tests (pipelines, servers): what CI runs", "args": "pytest args"})
def test(c: Context, all_: bool = False, args: str = "") -> None:
    """Run the tests: the fast ones by default (seconds), every one with --all."""
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
    """ruff (lint and format check) and mypy."""
    python = shlex.quote(sys.executable)
    c.run(f"{python} -m ruff check .", pty=False)
    c.run(f"{python} -m ruff format --check .", pty=False)
    c.run(f"{python} -m mypy src tasks.py", pty=False)
