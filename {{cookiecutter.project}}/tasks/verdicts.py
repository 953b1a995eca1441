"""Who serves which user clusters, and the evidence to move them: traffic, ab, compare."""

from __future__ import annotations

from invoke import Context, Exit, task

from .plumbing import OVERRIDE_HELP, release_context


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
    """traffic: Show or move which version serves which user clusters (A/B, canary, blue/green).

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
    with release_context(env, override) as ctx:
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
    """traffic: Paired A/B verdicts of each live version against the control, on real outcomes.

    Paired comparison on outcomes (every live version predicts every trip, in shadow when it
    does not serve it): n, MAE and bias of each, the MAE difference with its interval, per
    user cluster and overall, and a verdict: better, worse, equivalent or inconclusive.
    """
    from pathlib import Path

    from {{ cookiecutter.package }}.release.evidence import compare_live
    from {{ cookiecutter.package }}.reports import ab as report

    with release_context(env, override) as ctx:
        comparisons = compare_live(ctx, control, since)
        report.show(comparisons, ctx.env)
        if html:
            page = report.write(Path(html), comparisons, str(ctx.cfg.project), ctx.env)
            print(f"report: {page}")


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
    """traffic: Two versions side by side: metrics, config diff, predictions on one batch.

    The predictions are computed on one fixed, labelled batch by each version's own code.
    """
    from pathlib import Path

    from {{ cookiecutter.package }}.reports import compare as report

    with release_context(env, override) as ctx:
        comparison = report.compare(ctx, base, new)
        report.show(comparison)
        if html:
            from {{ cookiecutter.package }}.reports.html import write

            print(f"report: {write(Path(html), comparison, str(ctx.cfg.project))}")
