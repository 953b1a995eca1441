"""Releasing a version and its lifecycle: build, train-adhoc, deploy-workflow, release,
bump and check-bump, versions, retire, revive, rollback."""

from __future__ import annotations

from invoke import Context, Exit, task

from .plumbing import OVERRIDE_HELP, release_context, user_errors


@task(help={**OVERRIDE_HELP, "dry_run": "print the commands, build nothing"}, iterable=["override"])
def build(
    c: Context, env: str = "local", override: list[str] | None = None, dry_run: bool = False
) -> None:
    """release: Build the image {registry}/{project}:{version} and push it (unless it exists)."""
    from {{ cookiecutter.package }}.release import image
    from {{ cookiecutter.package }}.release.plan import make_steps

    with release_context(env, override) as ctx:
        if dry_run:
            image.build(ctx, dry_run=True)  # the tags and the builder's commands
        else:
            make_steps(ctx, ctx.git.head(), only=["build"])


@task(help={"to": "patch, minor, major or an explicit version such as 1.4.0"})
def bump(c: Context, to: str = "patch") -> None:
    """release: Set the next version in pyproject.toml, lock, commit `Release X.Y.Z`."""
    from {{ cookiecutter.package }}.release.bump import bump as run
    from {{ cookiecutter.package }}.version import PROJECT_ROOT

    with user_errors():
        print(f"version {run(PROJECT_ROOT, to)} committed: `inv release` releases it")


@task(help=OVERRIDE_HELP, iterable=["override"])
def train_adhoc(c: Context, env: str = "local", override: list[str] | None = None) -> None:
    """release: Run this version's training pipeline once, with its own code, and wait for it.

    Features, model and metrics. Publishes the version's code first (its wheel, from HEAD).
    """
    from {{ cookiecutter.package }}.release.plan import make_steps

    with release_context(env, override) as ctx:
        make_steps(ctx, ctx.git.head(), only=["code", "train-adhoc"])


@task(help=OVERRIDE_HELP, iterable=["override"])
def deploy_workflow(c: Context, env: str = "local", override: list[str] | None = None) -> None:
    """release: Compile, register and schedule this version's training and inference pipelines."""
    from {{ cookiecutter.package }}.release.lifecycle import keep_newest_live
    from {{ cookiecutter.package }}.release.plan import make_steps

    with release_context(env, override) as ctx:
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
    """release: Release: tag, build, code, train-adhoc, deploy-workflow, traffic, record.

    Preflight checks come first; each step skips what exists, so a rerun finishes a release.
    """
    from {{ cookiecutter.package }}.release.plan import release as run
    from {{ cookiecutter.package }}.release.preflight import check_released_unchanged, is_released

    with release_context(env, override) as ctx:
        if skip_released and is_released(ctx):
            check_released_unchanged(ctx)
            print(f"version {ctx.names.version} is already released on {env}: nothing to do")
            return
        run(ctx, dry_run=dry_run)


@task
def check_bump(c: Context) -> None:
    """release: Fail when HEAD changes the release inputs of an already released (tagged) version.

    Run by CI on pull requests: a change to src/, conf/, pyproject.toml, the lock or the
    Dockerfile needs `inv bump`; README, tests and CI files do not.
    """
    from {{ cookiecutter.package }}.release.git import Git
    from {{ cookiecutter.package }}.release.inputs import check_bump as run
    from {{ cookiecutter.package }}.version import PROJECT_ROOT, read_version

    with user_errors():
        print(run(Git(PROJECT_ROOT), read_version()))


@task(
    help={**OVERRIDE_HELP, "where": "instead: where each version's features and predictions are"},
    iterable=["override"],
)
def versions(
    c: Context, env: str = "local", override: list[str] | None = None, where: bool = False
) -> None:
    """release: Every version and what exists for it, each metric's change from the previous.

    Image, code, features, the model's metrics, workflows, schedules, predictions, released.
    """
    from {{ cookiecutter.package }}.reports import versions as report

    with release_context(env, override) as ctx:
        if where:
            report.where(ctx)
        else:
            report.show(ctx)


@task(
    help={**OVERRIDE_HELP, "version": "version whose schedules to disable (required)"},
    iterable=["override"],
)
def retire(
    c: Context, version: str = "", env: str = "local", override: list[str] | None = None
) -> None:
    """release: Disable (never delete) a version's schedules; refused while it serves clusters."""
    from {{ cookiecutter.package }}.release.lifecycle import retire as run

    if not version:
        raise Exit("error: say which version: inv retire --version X.Y.Z", code=1)
    with release_context(env, override) as ctx:
        run(ctx, version)


@task(
    help={**OVERRIDE_HELP, "version": "retired version to make live again (required)"},
    iterable=["override"],
)
def revive(
    c: Context, version: str = "", env: str = "local", override: list[str] | None = None
) -> None:
    """release: Make a retired version live again, with no user clusters (then `inv traffic`)."""
    from {{ cookiecutter.package }}.release.lifecycle import revive as run

    if not version:
        raise Exit("error: say which version: inv revive --version X.Y.Z", code=1)
    with release_context(env, override) as ctx:
        run(ctx, version)


@task(help={**OVERRIDE_HELP, "to": "version to make live again (required)"}, iterable=["override"])
def rollback(
    c: Context, to: str = "", env: str = "local", override: list[str] | None = None
) -> None:
    """release: Make version TO live again and disable the newer versions (traffic moves back too).

    TO's schedules are re-enabled, its user clusters and those of every newer version move
    back to it, and the newer versions' schedules are disabled.
    """
    from {{ cookiecutter.package }}.release.lifecycle import rollback as run

    if not to:
        raise Exit("error: say which version: inv rollback --to X.Y.Z", code=1)
    with release_context(env, override) as ctx:
        run(ctx, to)
