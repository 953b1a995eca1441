"""Preflight: every reason a release of this version would be refused, checked before
anything is touched (`inv release` stops at the first, `--dry-run` lists them all)."""

from __future__ import annotations

import fnmatch
import json
import os

from {{ cookiecutter.package }}.artifacts.code import read_code
from {{ cookiecutter.package }}.artifacts.store import StoreError
from {{ cookiecutter.package }}.engines.workers import capture_in_worker
from {{ cookiecutter.package }}.errors import ReleaseError, UserError
from {{ cookiecutter.package }}.release import image, inputs, traffic_moves
from {{ cookiecutter.package }}.release.code_publishing import promotion_source
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.release.workflows import check_features_source


def is_released(ctx: ReleaseContext) -> bool:
    """The release record is written last: its presence means every step completed."""
    try:
        return ctx.store.exists(ctx.names.release_record_key)
    except StoreError as error:
        raise ReleaseError(f"artifact store unreachable: {error}") from error


def preflight(ctx: ReleaseContext) -> None:
    """Refuse before anything is touched; the first refusal is the error."""
    found = refusals(ctx)
    if found:
        raise ReleaseError(found[0])


def refusals(ctx: ReleaseContext, dry_run: bool = False) -> list[str]:
    """Every reason the release of this version would be refused, in the order checked.

    The release stops at the first; `--dry-run` lists them all, and starts nothing that
    outlives it (no warm worker: the configuration is checked in this process).
    """
    found: list[str] = []
    for check in (
        check_not_released,
        check_clean_tree,
        check_branch,
        check_tag,
        check_store,
        check_promotion,
        image.check,
        image.check_base,
        check_data_source,
        check_pinned_features,
        check_features_source,
        traffic_moves.check_policy,
        lambda ctx: ctx.lineage,  # where lineage goes: a bad setting is one line
        lambda ctx: check_config(ctx, in_worker=not dry_run),
        lambda ctx: ctx.engine.check(),
    ):
        try:
            check(ctx)
        except UserError as error:
            if str(error) not in found:
                found.append(str(error))
    return found


def check_not_released(ctx: ReleaseContext) -> None:
    names = ctx.names
    if is_released(ctx):
        raise ReleaseError(
            f"version {names.version} is already released on {ctx.env} "
            f"({names.uri(names.release_record_key)}); bump the version in "
            "pyproject.toml (`inv bump`)"
        )


def check_clean_tree(ctx: ReleaseContext) -> None:
    ctx.git.require_clean("commit or stash first")


def check_branch(ctx: ReleaseContext) -> None:
    branch = ctx.git.branch()
    allowed = [str(b) for b in ctx.cfg.env.allowed_branches]
    if not any(fnmatch.fnmatchcase(branch, pattern) for pattern in allowed):
        raise ReleaseError(
            f"branch {branch!r} may not release to {ctx.env} (allowed: {', '.join(allowed)})"
        )


def check_tag(ctx: ReleaseContext) -> None:
    # A version moves between environments by content: the tag marks the commit it was
    # first released from, and any commit with the same release inputs (a merge of develop
    # into main, fast-forward or not, or one that only touched the README) may release it
    # elsewhere. Other inputs need a new version.
    names = ctx.names
    tag_commit = ctx.git.tag_commit(names.git_tag)
    if tag_commit is None:
        return
    inputs.check_same_inputs(
        ctx.git, tag_commit, ctx.git.head(), f"tag {names.git_tag} marks commit {tag_commit[:12]}"
    )


def check_promotion(ctx: ReleaseContext) -> None:
    """An environment that promotes (`env.promote_from`) can read this version's code there,
    built from HEAD's release inputs, unless it has the code already."""
    if ctx.cfg.env.get("promote_from") and read_code(ctx.store, ctx.names) is None:
        promotion_source(ctx, ctx.git.head())


def check_released_unchanged(ctx: ReleaseContext) -> None:
    """`--skip-released` (CD on every merge): a released version is fine only while HEAD
    has its release inputs; a change under it (a hotfix without a bump) is refused."""
    record = json.loads(ctx.store.read_text(ctx.names.release_record_key))
    inputs.check_unchanged(
        ctx.git, ctx.names.version, ctx.git.head(), str(record.get("git_sha", ""))
    )


def check_store(ctx: ReleaseContext) -> None:
    try:
        ctx.store.check()
    except StoreError as error:
        raise ReleaseError(f"artifact store unreachable: {error}") from error


def check_config(ctx: ReleaseContext, in_worker: bool = True) -> None:
    """The resolved training configuration, checked as training would use it: by the
    version's own code in its warm worker when its environment exists and `in_worker`
    (building the estimator imports scikit-learn, seconds in a new process), else here."""
    cfg = ctx.cfg
    arguments = (ctx.plain_config()["model"], int(cfg.data.n_trips), float(cfg.data.test_fraction))
    python = ctx.environments.existing_python(ctx.names)
    idle_s = float(cfg.env.get("worker_idle_seconds", 0))
    if in_worker and python is not None and idle_s > 0:
        script = (
            "import json, sys\n"
            "from {{ cookiecutter.package }}.ml.fitting import check_training_config\n"
            "try:\n"
            f"    check_training_config(*json.loads({json.dumps(arguments)!r}))\n"
            "except ValueError as error:\n"
            "    print(error)\n"
        )
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        cwd = str(ctx.project_root)
        ran = capture_in_worker(python, "{{ cookiecutter.package }}", script, env, cwd, idle_s)
        if ran.returncode == 0:
            if ran.stdout.strip():
                raise ReleaseError(f"invalid configuration: {ran.stdout.strip()}")
            return
    from {{ cookiecutter.package }}.ml.fitting import check_training_config

    try:
        check_training_config(*arguments)
    except ValueError as error:
        raise ReleaseError(f"invalid configuration: {error}") from None


def check_data_source(ctx: ReleaseContext) -> None:
    """The configured data source can be read (its files exist, its settings make sense)."""
    from {{ cookiecutter.package }}.artifacts.data_sources import DataSourceError

    try:
        ctx.data_source.check()
    except DataSourceError as error:
        raise ReleaseError(str(error)) from error


def check_pinned_features(ctx: ReleaseContext) -> None:
    """Features pinned to another version are reused, never computed under that name; and
    features the release would reuse are verified before anything is written (tag, code)."""
    names = ctx.names
    if ctx.feature_store.exists(names.feature_version):
        ctx.feature_store.verify(names.feature_version)
    if names.feature_version == names.version:
        return
    if not ctx.feature_store.exists(names.feature_version):
        raise ReleaseError(
            f"pinned feature version {names.feature_version} does not exist on {ctx.env} "
            f"({ctx.feature_store.location(names.feature_version)}): release "
            f"{names.feature_version} to "
            f"{ctx.env} first (its training produces them), or unpin features.version"
        )
