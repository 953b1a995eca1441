"""Nothing left behind: temporary files of killed writes, objects of a publish race's loser,
and what a version's environment really occupies (`release.debris`, `inv gc`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import SHA, make_live, release_context, release_model, snapshot

from {{ cookiecutter.package }}.artifacts import models
from {{ cookiecutter.package }}.artifacts.names import names_for
from {{ cookiecutter.package }}.artifacts.store import LocalStore
from {{ cookiecutter.package }}.release import retention
from {{ cookiecutter.package }}.release.debris import freed_bytes
from {{ cookiecutter.package }}.release.plan import make_steps
from {{ cookiecutter.package }}.reports.retention_report import describe

RIDGE = {"_target_": "sklearn.linear_model.Ridge"}
LATER = timedelta(days=8)  # past the default grace period (7 days)

# A store write killed after its file is in place and before its temporary file is removed
# (between link() and unlink(): the one window a write leaves debris in).
KILLED_WRITE = """
import os, signal, sys
from {{ cookiecutter.package }}.artifacts import store

real_link = os.link
def link_then_die(source, target):
    real_link(source, target)
    os.kill(os.getpid(), signal.SIGKILL)

store.os.link = link_then_die
store.LocalStore(sys.argv[1]).write(sys.argv[2], b"{}")
"""


def killed_write(root: Path, key: str) -> None:
    done = subprocess.run([sys.executable, "-c", KILLED_WRITE, str(root), key], check=False)
    assert done.returncode == -9


def partials(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*.partial"))


def test_a_rerun_removes_what_killed_writes_left_and_never_a_live_writers(
    cfg, tmp_path: Path, artifact_root: Path
) -> None:
    """Issue 50 (5): a kill -9 while the code record was written left its temporary file
    behind after the rerun completed. Every store write of a release is killed once here
    (code record, model metadata, features manifest, traffic record); the next release step
    removes all four, and leaves the temporary file of a writer that is still running."""
    make_live(cfg, tmp_path, cfg.version)
    # Beside the real records (whose names are taken): the same folders, the same window.
    killed = ("code/x/code.json.2", "models/x/metadata.json.2",
              "features/x/train/manifest.json.2", "traffic/20990101T000000Z-dead.json")  # fmt: skip
    for key in killed:
        killed_write(artifact_root, key.replace("/x/", f"/{cfg.version}/"))
    assert len(partials(artifact_root)) == 4
    writer = subprocess.Popen(["sleep", "60"])  # a live writer of another process
    live = artifact_root / f"models/{cfg.version}/.model-abc.pkl.x1y2.{writer.pid}.partial"
    live.write_bytes(b"half")
    try:
        ctx = release_context(cfg, tmp_path)
        make_steps(ctx, SHA, only=["deploy-workflow"])
        assert partials(artifact_root) == [str(live.relative_to(artifact_root))]
    finally:
        writer.kill()
        writer.wait()
    assert LocalStore(artifact_root).remove_debris(names_for(cfg).written_prefixes) == 1


def test_gc_removes_a_publish_races_losers_after_the_grace_period(
    cfg, tmp_path: Path, artifact_root: Path
) -> None:
    names = release_model(artifact_root, "1.0.0", RIDGE, tmp_path)
    make_live(cfg, tmp_path, "1.0.0")
    store = LocalStore(artifact_root)
    losers = {  # what a losing release of the same version wrote before its commit failed
        "models/1.0.0/model-ffffffffffffffff.pkl": b"another model",
        "models/1.0.0/serving-ffffffffffffffff.npz": b"its numpy form",
        "code/1.0.0/ffffffffffffffff/taxi-1.0.0-py3-none-any.whl": b"another wheel",
        "features/1.0.0/train/ffffffffffff-part-00000.parquet": b"a killed attempt's part",
    }
    for key, data in losers.items():
        store.write(key, data)
    # A release of 2.0.0 still running: its model object is written, its metadata is not.
    running = {"models/2.0.0/model-eeeeeeeeeeeeeeee.pkl": b"not yet named"}
    store.write(*next(iter(running.items())))
    ctx = release_context(cfg, tmp_path)
    now = datetime.now(UTC)

    assert retention.gc(ctx, apply=False, now=now)["unnamed"] == {}  # within the grace
    before = snapshot(artifact_root)
    report = retention.gc(ctx, apply=False, now=now + LATER)
    assert sorted(h.key for h in report["unnamed"]["1.0.0"]) == sorted(losers)
    assert "1.0.0: would remove 4 object(s) no record names" in "\n".join(describe(report, False))
    assert snapshot(artifact_root) == before  # a dry run

    retention.gc(ctx, apply=True, now=now + LATER)
    assert not any((artifact_root / key).exists() for key in losers)
    assert all((artifact_root / key).exists() for key in running)
    audit = [json.loads(p.read_text()) for p in (artifact_root / "retention/audit/1.0.0").iterdir()]
    assert sorted(a["uri"].removeprefix(f"{artifact_root}/") for a in audit) == sorted(losers)
    models.load(store, names)  # what the records name is whole
    assert len(ctx.feature_store.read("1.0.0")) > 0


def test_an_environment_counts_each_file_once_and_nothing_its_cache_still_holds(
    tmp_path: Path,
) -> None:
    cache, env = tmp_path / "cache", tmp_path / "env"
    cache.mkdir()
    (env / "lib").mkdir(parents=True)
    (cache / "numpy.so").write_bytes(b"x" * 1000)
    os.link(cache / "numpy.so", env / "lib/numpy.so")  # installed from uv's cache
    (env / "own.py").write_bytes(b"y" * 100)
    os.link(env / "own.py", env / "lib/own-again.py")  # one file, two names, both inside
    assert freed_bytes(env) == 100


@pytest.mark.parametrize("format_", ["parquet"])
def test_unnamed_objects_of_an_uncommitted_folder_are_never_listed(
    cfg, tmp_path: Path, artifact_root: Path, format_: str
) -> None:
    store = LocalStore(artifact_root)
    store.write(f"features/3.0.0/train/aaaaaaaaaaaa-part-00000.{format_}", b"part")
    store.write("code/3.0.0/ffffffffffffffff/w.whl", b"wheel")
    ctx = release_context(cfg, tmp_path)
    from {{ cookiecutter.package }}.release.debris import unnamed

    assert unnamed(ctx, "3.0.0", datetime.now(UTC) + timedelta(days=365), 0) == []
