"""Batch runs and the data they read: run-inference, run-scheduled, sample-data, drift."""

from __future__ import annotations

from invoke import Context, Exit, task

from .plumbing import INTERVAL_HELP, OVERRIDE_HELP, release_context, user_errors


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
    """runs: Run a version's batch-inference pipeline once, on the trips of an interval."""
    from {{ cookiecutter.package }}.release.ticks import run_inference as run

    with release_context(env, override, version) as ctx:
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
    """runs: Fire every enabled local schedule once, each version with its own code (cron it).

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
    with release_context(env, override) as ctx:
        run(ctx, workflow, start, end, rerun)  # type: ignore[arg-type]
        if workflow == "inference":  # demote what the new outcomes show to be worse
            from {{ cookiecutter.package }}.release.promotion import guard

            guard(ctx)


@task(
    help={
        "out": "folder to write into (created; existing files are never overwritten)",
        "rows": "training trips (default 2000)",
        "format": "parquet (default) or csv",
        "with_outcomes": "also daily partitions of trips to predict (batch/dt=.../) and of "
        "their actual durations (outcomes/dt=.../): a week two weeks ago unless told",
        "days": "with --with-outcomes: how many days of partitions (default 7)",
        "start": "with --with-outcomes: the first day (ISO date; default: two weeks ago, Monday)",
        "rows_per_day": "with --with-outcomes: about this many trips a day (default rows/8)",
    }
)
def sample_data(
    c: Context,
    out: str = "",
    rows: str = "2000",
    format_: str = "parquet",
    with_outcomes: bool = False,
    days: str = "7",
    start: str = "",
    rows_per_day: str = "",
) -> None:
    """runs: Write sample trips in the shape the data sources read, and print the schema."""
    from pathlib import Path

    from {{ cookiecutter.package }}.artifacts.intervals import moment
    from {{ cookiecutter.package }}.artifacts.sample_data import write_sample
    from {{ cookiecutter.package }}.ml.schema import schema_table

    if not out:
        raise Exit("error: name the folder to write into: --out DIR", code=1)
    for flag, value in (("rows", rows), ("days", days), ("rows-per-day", rows_per_day or "1")):
        if not value.isdigit():  # taken as text: invoke's own int() would end in a traceback
            raise Exit(f"error: invalid --{flag} {value!r}: use a whole number", code=1)
    with user_errors():
        first = moment(start, "--start") if start else None
        per_day = int(rows_per_day) if rows_per_day else None
        written = write_sample(Path(out), int(rows), format_, with_outcomes, int(days), first,
                               per_day)  # fmt: skip
    partitions: dict[Path, list[str]] = {}
    for path in written:
        if path.parent == Path(out):
            print(f"wrote {path}")
        else:  # batch/dt=.../trips.parquet: one line per partitioned folder
            partitions.setdefault(path.parent.parent, []).append(path.parent.name)
    for folder, names in partitions.items():
        print(f"wrote {folder}/: {len(names)} daily partitions, {names[0]} to {names[-1]}")
    print(f"\nwhat a trip holds (ml/schema.py):\n{schema_table()}")


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
    """runs: What live versions were asked to predict, against their training data (no outcomes).

    Per input and for the predictions, overall and per user cluster: the normalised
    Wasserstein distance (numeric) or the Jensen-Shannon distance (categorical) of the runs
    since --since against the reference stored with the model, and a chi-square test;
    drift when the move is beyond noise (Holm-adjusted) and beyond the threshold.
    """
    from pathlib import Path

    from {{ cookiecutter.package }}.reports import drift_report as report

    with release_context(env, override) as ctx:
        found = report.measure(ctx, version, since)
        if json:
            import json as json_module

            print(json_module.dumps(report.calls(found), indent=1))
        else:
            report.show(found)
        if html:
            print(f"report: {report.write(Path(html), found, str(ctx.cfg.project))}")
