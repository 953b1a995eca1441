"""Retention (`inv gc`): six versions, two live, one dark, three retired; what goes, when,
and that nothing a kept version needs is ever touched, kills included."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import composed, inv_here, make_live, release_model, snapshot

from {{ cookiecutter.package }}.artifacts import models, traffic
from {{ cookiecutter.package }}.artifacts.names import names_for
from {{ cookiecutter.package }}.errors import ReleaseError
from {{ cookiecutter.package }}.release import lifecycle, retention, traffic_moves
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.reports.retention_report import describe
from {{ cookiecutter.package }}.reports.versions import released_state

# Six released versions take seconds to make (once per test process): start these first.
pytestmark = pytest.mark.heavy

VERSIONS = ("1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0")
RIDGE = {"_target_": "sklearn.linear_model.Ridge", "alpha": 1.0}
OLD_RUN, NEW_RUN = "20250101T000000-old", "29990101T000000-new"
LATER = timedelta(days=8)  # past the default grace period (7 days)


def context(root: Path | str, project: Path, version: str | None = None) -> ReleaseContext:
    cfg = composed(
        "local", ("model=ridge", "retention.keep_retired=1"), {"env.artifact_root": str(root)}
    )
    return ReleaseContext(cfg, names_for(cfg, version), project_root=project)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """1.3.0 and 1.4.0 serve the clusters, 1.5.0 is dark, 1.0.0 to 1.2.0 are retired; 1.3.0
    was trained on 1.1.0's features (a pin); 1.0.0 has an old and a recent prediction run
    and a local environment."""
    base = tmp_path_factory.mktemp("six-versions")
    root, project = base / "artifacts", base / "project"
    for version in VERSIONS:
        release_model(root, version, RIDGE, base)
        ctx = context(root, project, version)
        make_live(ctx.cfg, project, version)
    ctx = context(root, project)
    pinned = {"version": "1.3.0", "feature_version": "1.1.0"}
    (root / "releases/1.3.0.json").write_text(json.dumps(pinned))
    for run in (OLD_RUN, NEW_RUN):
        (root / "predictions/1.0.0").mkdir(parents=True, exist_ok=True)
        (root / f"predictions/1.0.0/{run}.parquet").write_bytes(run.encode())
    environment = project / ".version-envs/1.0.0-0123456789ab"
    (environment / "bin").mkdir(parents=True)
    (environment / "bin/python").write_text("#!/bin/sh\n")
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        ctx.engine.set_enabled(ctx.names_of(version), False)
    traffic.record(
        ctx.store, {"1.3.0": range(4), "1.4.0": range(4, 8)}, 8, live=VERSIONS[3:], reason="A/B"
    )
    return root, project


@pytest.fixture
def six(prepared: tuple[Path, Path], tmp_path: Path) -> ReleaseContext:
    """A fresh copy of the six versions for each test."""
    root, project = (tmp_path / p.name for p in prepared)
    for source, copy in zip(prepared, (root, project), strict=True):
        shutil.copytree(source, copy, symlinks=True)
    return context(root, project)


def kinds(planned: list[retention.Removal]) -> list[tuple[str, str]]:
    return sorted((r.kind, r.uri.rsplit("/", 1)[-1]) for r in planned)


def test_the_dry_run_lists_exactly_what_would_go_and_changes_nothing(six: ReleaseContext) -> None:
    root = Path(six.store.root)
    before = snapshot(root)
    report = retention.gc(six)
    assert set(report["kept"]) == {"1.2.0", "1.3.0", "1.4.0", "1.5.0"}
    assert "rollback window" in report["kept"]["1.2.0"]
    assert "dark" in report["kept"]["1.5.0"]
    assert set(report["tombstoned"]) == {"1.0.0", "1.1.0"}
    first = kinds(report["tombstoned"]["1.0.0"])
    assert [k for k, _ in first].count("features") >= 2  # parts and their manifest
    assert ("predictions", f"{OLD_RUN}.parquet") in first
    assert ("predictions", f"{NEW_RUN}.parquet") not in first  # younger than 90 days
    assert ("environment", "1.0.0-0123456789ab") in first
    assert [k for k, _ in first].count("model") == 2  # the pickle and its numpy form
    # 1.1.0's features are the ones 1.3.0 (live) was trained on: they stay.
    assert [k for k, _ in kinds(report["tombstoned"]["1.1.0"])] == ["model", "model"]
    lines = describe(report, apply=False)
    assert lines[-1].startswith("total: ") and lines[-1].endswith("(dry run: nothing changed)")
    assert snapshot(root) == before


def test_apply_tombstones_first_and_sweeps_only_after_the_grace_period(
    six: ReleaseContext,
) -> None:
    root = Path(six.store.root)
    before = snapshot(root)
    now = datetime.now(UTC)
    retention.gc(six, apply=True, now=now)
    after = snapshot(root)
    added = {k for k in after if k not in before}
    assert added == {"retention/tombstones/1.0.0.json", "retention/tombstones/1.1.0.json"}
    assert {k: v for k, v in after.items() if k in before} == before
    waiting = retention.gc(six, apply=True, now=now + timedelta(days=6))  # within the grace
    assert snapshot(root).keys() == after.keys()
    assert set(waiting["waiting"]) == {"1.0.0", "1.1.0"} and not waiting["swept"]
    assert any(
        line.startswith("1.0.0: tombstoned, swept after ") for line in describe(waiting, apply=True)
    )

    tombstoned = {
        v: json.loads((root / f"retention/tombstones/{v}.json").read_text())["removals"]
        for v in ("1.0.0", "1.1.0")
    }
    retention.gc(six, apply=True, now=now + LATER)
    for version, removals in tombstoned.items():
        for removal in removals:
            gone = Path(removal["path"]) if removal["path"] else root / removal["key"]
            assert not gone.exists(), removal
        audit = sorted((root / f"retention/audit/{version}").glob("*.json"))
        assert [json.loads(p.read_text())["uri"] for p in audit] == [r["uri"] for r in removals]
        assert (root / f"retention/swept/{version}.json").exists()
    # What stays: records, metadata, 1.1.0's features (1.3.0's pin), the recent run.
    assert (root / "releases/1.0.0.json").exists() and (
        root / "models/1.0.0/metadata.json"
    ).exists()
    assert (root / "features/1.1.0/train/manifest.json").exists()
    assert (root / f"predictions/1.0.0/{NEW_RUN}.parquet").exists()
    for version in ("1.2.0", "1.3.0", "1.4.0", "1.5.0"):  # every kept model still verifies
        models.load(six.store, six.names_of(version))
    assert released_state(six.for_version("1.0.0")).startswith("swept ")
    with pytest.raises(ReleaseError, match=r"cannot revive 1\.0\.0: it was swept by `inv gc`"):
        lifecycle.revive(six, "1.0.0")
    with pytest.raises(ReleaseError, match=r"cannot roll back to 1\.1\.0: it was swept"):
        lifecycle.rollback(six, "1.1.0")
    lifecycle.rollback(six, "1.2.0")  # the rollback window works
    assert traffic.clusters_for(six.store, "1.2.0") == list(range(8))


def test_a_version_brought_back_after_its_tombstone_loses_nothing(six: ReleaseContext) -> None:
    root = Path(six.store.root)
    now = datetime.now(UTC)
    retention.gc(six, apply=True, now=now)
    lifecycle.revive(six, "1.1.0")  # live again, between the tombstone and the sweep

    def of_1_1_0() -> dict[str, bytes]:
        found = snapshot(root).items()
        return {k: v for k, v in found if "/1.1.0" in k and not k.startswith("retention/")}

    before = of_1_1_0()
    report = retention.gc(six, apply=True, now=now + LATER)
    assert of_1_1_0() == before
    assert not (root / "retention/tombstones/1.1.0.json").exists()
    assert "1.1.0" in report["kept"] and (root / "retention/swept/1.0.0.json").exists()


def test_inv_gc_prints_per_version_and_kind_and_refuses_a_bad_policy_in_one_line(
    six: ReleaseContext,
) -> None:
    root = Path(six.store.root)
    before = snapshot(root)
    where = ("-o", f"env.artifact_root={root}", "-o", "model=ridge")
    code, out, _ = inv_here("gc", *where, "-o", "retention.keep_retired=1")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("1.0.0: would tombstone: model 2 (") and "features 2 (" in lines[0]
    assert lines[1].startswith("1.1.0: would tombstone: model 2 (")
    assert "1.5.0: kept: newer than every serving version" in out
    assert lines[-1].startswith("total: ") and lines[-1].endswith("(dry run: nothing changed)")
    code, out, err = inv_here("gc", "--apply", *where, "-o", "retention.keep_retired=-1")
    assert (code, out) == (1, "")
    assert err.strip() == (
        "error: retention: keep_retired, grace_days and predictions_days must be >= 0"
    )
    assert snapshot(root) == before


def test_a_sweep_of_a_gcs_store_removes_and_records_the_objects(
    gcs_root: str, tmp_path: Path
) -> None:
    """The same policy on a `gs://` store (fake-gcs-server): 1.0.0 retired beyond the window
    of one, 1.1.0 in it, 1.2.0 serving."""
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        release_model(gcs_root, version, RIDGE, tmp_path)
        make_live(context(gcs_root, tmp_path).cfg, tmp_path, version)
    ctx = context(gcs_root, tmp_path)
    for version in ("1.0.0", "1.1.0"):
        ctx.engine.set_enabled(ctx.names_of(version), False)
    traffic.record(ctx.store, {"1.2.0": range(8)}, 8, live=["1.2.0"], reason="all")
    now = datetime.now(UTC)
    planned = retention.gc(ctx, apply=True, now=now)["tombstoned"]
    assert list(planned) == ["1.0.0"]
    retention.gc(ctx, apply=True, now=now + LATER)
    gone = [r.key for r in planned["1.0.0"]]
    assert gone and not any(ctx.store.exists(key) for key in gone)
    audit = ctx.store.list("retention/audit/1.0.0/")
    assert [json.loads(ctx.store.read_text(k))["key"] for k in audit] == gone
    assert ctx.store.exists("models/1.0.0/metadata.json")
    models.load(ctx.store, ctx.names_of("1.1.0"))


KILLED_SWEEP = """
import os, signal, sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from conftest import composed
from {{ cookiecutter.package }}.artifacts.names import names_for
from {{ cookiecutter.package }}.release import retention
from {{ cookiecutter.package }}.release.context import ReleaseContext

root, project, limit, when = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
cfg = composed("local", ("model=ridge", "retention.keep_retired=1"), {"env.artifact_root": root})
ctx = ReleaseContext(cfg, names_for(cfg), project_root=Path(project))
remove, done = retention._remove, []

def remove_then_maybe_die(ctx, removal):
    if when == "before" and len(done) == limit:
        os.kill(os.getpid(), signal.SIGKILL)
    remove(ctx, removal)
    done.append(removal)
    if when == "after" and len(done) == limit + 1:  # removed, not yet recorded
        os.kill(os.getpid(), signal.SIGKILL)

retention._remove = remove_then_maybe_die
retention.gc(ctx, apply=True, now=datetime.now(UTC) + timedelta(days=8))
"""


@pytest.mark.slow
def test_a_sweep_killed_at_every_step_finishes_when_run_again(
    six: ReleaseContext, tmp_path: Path
) -> None:
    root, project = Path(six.store.root), six.project_root
    retention.gc(six, apply=True)
    planned = [
        removal
        for version in ("1.0.0", "1.1.0")
        for removal in json.loads((root / f"retention/tombstones/{version}.json").read_text())[
            "removals"
        ]
    ]
    fresh = tmp_path / "fresh"
    shutil.copytree(root, fresh / "artifacts")
    shutil.copytree(project, fresh / "project", symlinks=True)
    kept_before = {k: v for k, v in snapshot(root).items() if not k.startswith("retention/")}
    for limit in range(len(planned)):
        for when in ("before", "after"):
            for copy in (root, project):
                shutil.rmtree(copy)
            shutil.copytree(fresh / "artifacts", root)
            shutil.copytree(fresh / "project", project, symlinks=True)
            killed = subprocess.run(
                [sys.executable, "-c", KILLED_SWEEP, str(root), str(project), str(limit), when],
                cwd=Path(__file__).parent,
                capture_output=True,
                text=True,
            )
            assert killed.returncode == -9, killed.stderr
            retention.gc(context(root, project), apply=True, now=datetime.now(UTC) + LATER)
            gone = {r["uri"] for r in planned}
            audited = [
                json.loads(p.read_text())["uri"] for p in (root / "retention/audit").rglob("*.json")
            ]
            assert sorted(audited) == sorted(gone), (limit, when)  # once each, all of them
            for removal in planned:
                assert not (
                    Path(removal["path"]) if removal["path"] else root / removal["key"]
                ).exists()
            kept = {k: v for k, v in kept_before.items() if root.joinpath(k).exists()}
            lost = set(kept_before) - set(kept) - {str(Path(r["key"])) for r in planned if r["key"]}
            assert not lost, (limit, when, lost)


def _killed(six: ReleaseContext, removal: int, when: str) -> None:
    """An `inv gc --apply` past the grace period, killed right `when` (before, after) its
    removal number `removal` (from 0), long before `swept/<version>.json`."""
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_SWEEP, six.store.root, str(six.project_root),
         str(removal), when],
        cwd=Path(__file__).parent, capture_output=True, text=True,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr


@pytest.mark.slow
def test_a_version_whose_sweep_was_killed_never_comes_back(six: ReleaseContext) -> None:
    """The reproduction of issue 50 (4): 1.0.0's sweep killed right after its model object
    was removed. Revive, rollback and traffic moves to it are refused in one line, store
    unchanged; the next gc finishes the sweep instead of withdrawing its tombstone."""
    root = Path(six.store.root)
    retention.gc(six, apply=True)
    planned = json.loads((root / "retention/tombstones/1.0.0.json").read_text())["removals"]
    model = next(i for i, r in enumerate(planned) if r["kind"] == "model")
    _killed(six, model, "after")
    assert (root / "retention/sweeping/1.0.0.json").exists()
    assert not (root / "retention/swept/1.0.0.json").exists()
    assert not (root / planned[model]["key"]).exists()
    assert released_state(six.for_version("1.0.0")).startswith("being swept ")
    before = snapshot(root)
    for doing, call in (
        ("revive", lambda: lifecycle.revive(six, "1.0.0")),
        ("roll back to", lambda: lifecycle.rollback(six, "1.0.0")),
    ):
        with pytest.raises(ReleaseError) as refused:
            call()
        message = str(refused.value)
        assert message.startswith(f"cannot {doing} 1.0.0: 1.0.0 is being swept"), message
        assert "its model is gone" in message and "\n" not in message
    with pytest.raises(traffic.TrafficError, match="not live"):
        traffic_moves.assign(six, ["1.0.0=7"])
    assert snapshot(root) == before

    report = retention.gc(six, apply=True, now=datetime.now(UTC) + LATER)
    assert not report["withdrawn"] and (root / "retention/swept/1.0.0.json").exists()
    assert all(not (root / r["key"]).exists() for r in planned if r["key"])


@pytest.mark.slow
def test_a_sweep_stops_before_removing_the_model_of_a_version_a_traffic_record_names(
    six: ReleaseContext,
) -> None:
    """A move that raced the commit point (made here by writing the record directly, as no
    command can any more): the sweep removes nothing more and says why, non-zero."""
    root = Path(six.store.root)
    retention.gc(six, apply=True)
    planned = json.loads((root / "retention/tombstones/1.0.0.json").read_text())["removals"]
    first_model = next(i for i, r in enumerate(planned) if r["kind"] == "model")
    _killed(six, first_model, "before")  # committed, the model not yet removed
    six.engine.set_enabled(six.names_of("1.0.0"), True)
    traffic.record(six.store, {"1.0.0": [7], "1.3.0": range(4), "1.4.0": range(4, 7)}, 8,
                   live=["1.0.0", *VERSIONS[3:]], reason="raced the sweep")  # fmt: skip
    before = snapshot(root)
    with pytest.raises(ReleaseError, match=r"1\.0\.0 is being swept but serves user clusters"):
        retention.gc(six, apply=True, now=datetime.now(UTC) + LATER)
    assert {k: v for k, v in snapshot(root).items() if "audit" not in k} == {
        k: v for k, v in before.items() if "audit" not in k
    }
    models.load(six.store, six.names_of("1.0.0"))


def test_a_traffic_move_to_a_live_version_without_its_model_or_code_is_refused(
    six: ReleaseContext,
) -> None:
    root = Path(six.store.root)
    metadata = models.read_metadata(six.store, six.names_of("1.5.0"))
    (root / metadata["model_key"]).unlink()
    code_record = json.loads((root / "code/1.4.0/code.json").read_text())
    (root / code_record["wheel"]).unlink()
    before = snapshot(root)
    for version, missing in (("1.5.0", metadata["model_key"]), ("1.4.0", code_record["wheel"])):
        with pytest.raises(ReleaseError) as refused:
            traffic_moves.assign(six, [f"{version}=0-7"])
        assert str(refused.value).startswith(f"cannot move clusters to {version}: ")
        assert missing in str(refused.value) and str(refused.value).endswith("cannot serve")
    assert snapshot(root) == before
