"""Keeping a machine and a store tidy: gc, workers."""

from __future__ import annotations

from invoke import Context, task

from .plumbing import OVERRIDE_HELP, release_context


@task(
    help={**OVERRIDE_HELP, "apply": "tombstone, and sweep tombstones past the grace period"},
    iterable=["override"],
)
def gc(
    c: Context, apply: bool = False, env: str = "local", override: list[str] | None = None
) -> None:
    """ops: What retention removes of retired versions (conf/retention/): a dry run by default.

    With --apply, versions outside the keep set are tombstoned (what will go, with sha256
    and bytes); a tombstone older than retention.grace_days is swept, the keep set computed
    again before each removal, each removal recorded under retention/audit/.
    """
    from {{ cookiecutter.package }}.release.retention import gc as run
    from {{ cookiecutter.package }}.reports.retention_report import describe

    with release_context(env, override) as ctx:
        for line in describe(run(ctx, apply), apply):
            print(line)


@task(
    help={
        "stop": "end this checkout's workers (and any run in them)",
        "all": "every checkout's workers of this project on this machine, not only this one's",
    }
)
def workers(c: Context, stop: bool = False, all_: bool = False) -> None:
    """ops: List this checkout's warm workers of released versions (local runs fork from them).

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
