"""What runs unattended: one scheduled tick at a time (a lease in the artifact store), no
interval predicted twice by one version, and no run in the future (`release.ticks`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import composed, inv_here, release_context, snapshot

from {{ cookiecutter.package }}.artifacts import prediction_runs
from {{ cookiecutter.package }}.artifacts.intervals import Interval, IntervalError, moment
from {{ cookiecutter.package }}.artifacts.leases import LeaseHeldError, holder_of, lease
from {{ cookiecutter.package }}.artifacts.store import LocalStore
from {{ cookiecutter.package }}.release.ticks import checked, tick_interval
from {{ cookiecutter.package }}.release.workflows import deploy_workflows

SHA = "0123456789abcdef0123456789abcdef01234567"


def test_a_lease_has_one_holder_and_is_free_again_when_released(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "artifacts")
    with lease(store, "ticks", 60, "a first tick"):
        held = holder_of(store, "ticks")
        assert held is not None and held["pid"] == os.getpid() and held["what"] == "a first tick"
        with pytest.raises(LeaseHeldError) as refused, lease(store, "ticks", 60, "a second"):
            pass
        message = str(refused.value)
        assert message.startswith(f"a first tick holds the lock {store.uri('locks/ticks')}")
        assert f"pid {os.getpid()}" in message and "\n" not in message
    assert holder_of(store, "ticks") is None and store.list("locks/") == []
    with lease(store, "ticks", 60, "a third tick"):  # free again
        assert holder_of(store, "ticks")["what"] == "a third tick"


KILLED_HOLDER = """
import os, signal, sys
from {{ cookiecutter.package }}.artifacts.leases import lease
from {{ cookiecutter.package }}.artifacts.store import LocalStore
with lease(LocalStore(sys.argv[1]), "ticks", 3600, "a killed tick"):
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_holder_here_is_taken_over_at_once_one_elsewhere_after_its_lease(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path / "artifacts")
    killed = subprocess.run([sys.executable, "-c", KILLED_HOLDER, store.root], check=False)
    assert killed.returncode == -signal.SIGKILL
    assert len(store.list("locks/ticks/")) == 1  # its lease is still there, for an hour
    assert holder_of(store, "ticks") is None  # but its process on this machine is gone
    with lease(store, "ticks", 60, "the next tick"):
        assert [k.rsplit("/", 1)[1] for k in store.list("locks/ticks/")] == ["000000000002.json"]
    # A holder on another machine is trusted until its lease expires.
    now = datetime.now(UTC)
    elsewhere = {
        "host": "another-machine",
        "pid": 1,
        "started": 1,
        "what": "a remote tick",
        "taken_at": now.isoformat(),
        "expires_at": (now + timedelta(hours=1)).isoformat(),
    }
    store.write_text("locks/ticks/000000000003.json", json.dumps(elsewhere))
    with (
        pytest.raises(LeaseHeldError, match="^a remote tick holds the lock"),
        lease(store, "ticks", 60, "a tick"),
    ):
        pass
    expired = {**elsewhere, "expires_at": (now - timedelta(seconds=1)).isoformat()}
    store.write_text("locks/ticks/000000000004.json", json.dumps(expired))
    with lease(store, "ticks", 60, "a tick after the lease"):
        assert holder_of(store, "ticks")["what"] == "a tick after the lease"
    assert store.list("locks/") == []


def test_an_interval_in_the_future_is_refused() -> None:
    now = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
    recent = Interval(now - timedelta(minutes=10), now)
    assert checked(recent, 600, now) == recent
    assert checked(Interval(now, now + timedelta(minutes=10)), 600, now)  # the running period
    with pytest.raises(IntervalError) as refused:
        checked(Interval(moment("2099-01-01"), moment("2099-01-02")), 600, now)
    assert str(refused.value) == (
        "the interval [2099-01-01, 2099-01-02) ends in the future (after 2026-12-08 12:10 UTC, "
        "now plus one period): give an end that has passed"
    )


def _context(cfg, tmp_path: Path):
    ctx = release_context(cfg, tmp_path)
    deploy_workflows(ctx, SHA)
    return ctx


def test_inv_run_scheduled_refuses_2099_and_writes_nothing(cfg, tmp_path: Path) -> None:
    ctx = _context(cfg, tmp_path)
    root = Path(ctx.store.root)
    before = snapshot(root)
    code, _, err = inv_here(
        "run-scheduled", "--start", "2099-01-01", "--end", "2099-01-02",
        "-o", f"env.artifact_root={root}",
    )  # fmt: skip
    assert code == 1 and err.strip().startswith("error: the interval [2099-01-01, 2099-01-02)")
    assert "ends in the future" in err and len(err.strip().splitlines()) == 1
    assert snapshot(root) == before


def test_the_next_tick_starts_where_the_last_run_not_in_the_future_ended(
    cfg, tmp_path: Path
) -> None:
    ctx = _context(cfg, tmp_path)
    now = datetime.now(UTC)
    real = Interval(now - timedelta(hours=2), now - timedelta(hours=1))
    future = Interval(moment("2099-01-01"), moment("2099-01-02"))  # written by hand
    for run_id, interval in (("20261208T000000-real", real), ("20990102T000000-hand", future)):
        prediction_runs.write(ctx.store, cfg.version, run_id, {"interval": interval.to_json()})
    tick = tick_interval(ctx)
    assert tick.start == real.end and now <= tick.end <= datetime.now(UTC)


@pytest.mark.slow
def test_two_ticks_started_together_predict_the_interval_once(tmp_path: Path) -> None:
    """Issue 50 (2): two `inv run-scheduled` started at once both wrote runs of one interval.
    Now one predicts it; the other exits in one line (the lease), or, started after the
    first finished, skips the version that predicted it already."""
    root = tmp_path / "artifacts"
    cfg = composed("local", ["model=ridge"], {"env.artifact_root": str(root)})
    ctx = release_context(cfg, tmp_path)
    from {{ cookiecutter.package }}.release.workflows import train_adhoc

    train_adhoc(ctx, SHA)
    deploy_workflows(ctx, SHA)
    end = datetime.now(UTC).replace(microsecond=0)
    args = ["--start", (end - timedelta(minutes=10)).isoformat(), "--end", end.isoformat()]
    inv = [sys.executable, "-m", "invoke", "run-scheduled", *args, "-o",
           f"env.artifact_root={root}"]  # fmt: skip
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    ticks = [subprocess.Popen(inv, cwd=Path(__file__).parents[1], **pipes) for _ in range(2)]
    results = [(tick.wait(600), *tick.communicate()) for tick in ticks]
    runs = prediction_runs.read(ctx.store, cfg.version)
    assert len(runs) == 1, results
    said = [out + err for _, out, err in results]
    assert sum(code == 0 for code, _, _ in results) >= 1
    assert any("holds the lock" in s or "predicted this interval already" in s for s in said)
    again = inv_here("run-scheduled", *args, "-o", f"env.artifact_root={root}")
    assert again[0] == 0 and "predicted this interval already" in again[1]
    assert len(prediction_runs.read(ctx.store, cfg.version)) == 1
