"""The traffic assignment: records, refusals, `inv traffic`, release policies, retire and
rollback. Versions are made live cheaply: deployed workflows (schedules) and a release record,
without training, which the pipeline tests cover."""

from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import make_live, snapshot
from conftest import release_context as context

from {{ cookiecutter.package }}.artifacts import traffic
from {{ cookiecutter.package }}.artifacts.store import open_store
from {{ cookiecutter.package }}.artifacts.traffic import TrafficError, format_clusters, parse_clusters
from {{ cookiecutter.package }}.errors import ReleaseError
from {{ cookiecutter.package }}.release import lifecycle
from {{ cookiecutter.package }}.release import traffic_moves as commands
from {{ cookiecutter.package }}.release.workflows import is_enabled


def clusters(cfg, root: Path) -> dict[str, list[int]]:
    assignment = traffic.current(context(cfg, root).store)
    assert assignment is not None
    return assignment.clusters


def test_cluster_specs() -> None:
    assert parse_clusters("4-7", 8) == [4, 5, 6, 7]
    assert parse_clusters("0, 2,5-6", 8) == [0, 2, 5, 6]
    assert format_clusters([0, 1, 2, 5, 7, 6]) == "0-2,5-7"
    assert format_clusters([]) == "-"
    for bad, message in (("a", "invalid clusters"), ("5-3", "5 > 3"), ("8", "does not exist")):
        with pytest.raises(TrafficError, match=message):
            parse_clusters(bad, 8)


def test_records_are_appended_and_the_latest_is_in_force(artifact_root: Path) -> None:
    store = open_store(str(artifact_root))
    assert traffic.current(store) is None and traffic.clusters_for(store, "1.0.0") is None
    traffic.record(store, {"1.0.0": range(8)}, 8, live=["1.0.0"], reason="first")
    traffic.record(store, {"1.0.0": range(4), "2.0.0": range(4, 8)}, 8, ["1.0.0", "2.0.0"], "ab")
    assert [r.reason for r in traffic.history(store)] == ["first", "ab"]
    assert traffic.clusters_for(store, "2.0.0") == [4, 5, 6, 7]
    assert traffic.clusters_for(store, "3.0.0") == []
    assert traffic.current(store).author  # who changed it is recorded


@pytest.mark.parametrize(
    ("assignment", "live", "message"),
    [
        ({"1.0.0": range(8), "2.0.0": [3]}, ["1.0.0", "2.0.0"], "served by both 1.0.0 and 2.0.0"),
        ({"1.0.0": range(6)}, ["1.0.0"], "clusters 6-7 would be served by no version"),
        ({"1.0.0": range(4), "2.0.0": range(4, 8)}, ["1.0.0"], "2.0.0 is not live"),
    ],
)
def test_overlaps_gaps_and_versions_that_are_not_live_are_refused(
    artifact_root: Path, assignment, live, message
) -> None:
    store = open_store(str(artifact_root))
    traffic.record(store, {"1.0.0": range(8)}, 8, live=["1.0.0"], reason="first")
    before = snapshot(artifact_root)
    with pytest.raises(TrafficError, match=message):
        traffic.record(store, assignment, 8, live=live, reason="bad")
    assert snapshot(artifact_root) == before


def test_release_policies_dark_switch_and_canary(cfg, tmp_path: Path) -> None:
    make_live(cfg, tmp_path, "1.0.0")
    commands.on_release(context(cfg, tmp_path, "1.0.0"))  # first release: everyone
    assert clusters(cfg, tmp_path) == {"1.0.0": list(range(8))}

    make_live(cfg, tmp_path, "1.1.0")
    assert commands.on_release(context(cfg, tmp_path, "1.1.0")) is None  # dark by default
    assert clusters(cfg, tmp_path) == {"1.0.0": list(range(8))}

    cfg.release.on_release = "canary"
    make_live(cfg, tmp_path, "1.2.0")
    commands.on_release(context(cfg, tmp_path, "1.2.0"))
    assert clusters(cfg, tmp_path) == {"1.0.0": list(range(7)), "1.2.0": [7]}
    commands.on_release(context(cfg, tmp_path, "1.2.0"))  # a rerun changes nothing
    assert len(traffic.history(context(cfg, tmp_path).store)) == 2

    cfg.release.on_release = "switch"
    make_live(cfg, tmp_path, "1.3.0")
    commands.on_release(context(cfg, tmp_path, "1.3.0"))
    assert clusters(cfg, tmp_path) == {"1.3.0": list(range(8))}


def test_assign_moves_clusters_and_refusals_change_nothing(
    cfg, tmp_path: Path, artifact_root: Path
) -> None:
    for version in ("1.0.0", "2.0.0"):
        make_live(cfg, tmp_path, version)
    commands.on_release(context(cfg, tmp_path, "1.0.0"))
    commands.assign(context(cfg, tmp_path), ["2.0.0=4-7"], reason="A/B by cluster")
    assert clusters(cfg, tmp_path) == {"1.0.0": [0, 1, 2, 3], "2.0.0": [4, 5, 6, 7]}
    assert traffic.current(context(cfg, tmp_path).store).reason == "A/B by cluster"

    before = snapshot(artifact_root)
    for specs, message in (
        (["3.0.0=1"], "3.0.0 is not live"),
        (["2.0.0=9"], "user cluster 9 does not exist"),
        (["2.0.0"], "write VERSION=CLUSTERS"),
        (["2.x=1"], "invalid version '2.x'"),
    ):
        with pytest.raises((ReleaseError, TrafficError, ValueError), match=message):
            commands.assign(context(cfg, tmp_path), specs)
    assert snapshot(artifact_root) == before

    commands.switch(context(cfg, tmp_path), "2.0.0")  # blue/green
    assert clusters(cfg, tmp_path) == {"2.0.0": list(range(8))}
    text = commands.describe(context(cfg, tmp_path), traffic.current(context(cfg, tmp_path).store))
    assert "2.0.0" in text and "100%" in text
    assert "all clusters to 2.0.0" in commands.describe_history(context(cfg, tmp_path))


def test_retire_is_refused_while_serving_and_rollback_moves_clusters_back(
    cfg, tmp_path: Path, artifact_root: Path
) -> None:
    for version in ("1.0.0", "2.0.0"):
        make_live(cfg, tmp_path, version)
    commands.on_release(context(cfg, tmp_path, "1.0.0"))
    commands.assign(context(cfg, tmp_path), ["2.0.0=4-7"])

    before = snapshot(artifact_root)
    with pytest.raises(ReleaseError, match="1.0.0 still serves user clusters 0-3"):
        lifecycle.retire(context(cfg, tmp_path), "1.0.0")
    assert snapshot(artifact_root) == before

    commands.switch(context(cfg, tmp_path), "2.0.0")
    lifecycle.retire(context(cfg, tmp_path), "1.0.0")
    assert not is_enabled(context(cfg, tmp_path), "1.0.0")
    with pytest.raises(TrafficError, match="1.0.0 is not live"):  # retired versions serve none
        commands.assign(context(cfg, tmp_path), ["1.0.0=0"])

    lifecycle.rollback(context(cfg, tmp_path), "1.0.0")
    assert clusters(cfg, tmp_path) == {"1.0.0": list(range(8))}
    assert is_enabled(context(cfg, tmp_path), "1.0.0")
    assert not is_enabled(context(cfg, tmp_path), "2.0.0")


def test_keep_live_never_retires_a_version_that_serves_clusters(cfg, tmp_path: Path) -> None:
    cfg.release.keep_live = 1
    for version in ("1.0.0", "2.0.0"):
        make_live(cfg, tmp_path, version)
    commands.on_release(context(cfg, tmp_path, "1.0.0"))
    lifecycle.keep_newest_live(context(cfg, tmp_path))
    assert is_enabled(context(cfg, tmp_path), "1.0.0")  # serves every cluster
    commands.switch(context(cfg, tmp_path), "2.0.0")
    lifecycle.keep_newest_live(context(cfg, tmp_path))
    assert not is_enabled(context(cfg, tmp_path), "1.0.0")


def test_a_retired_version_is_revived_without_clusters(cfg, tmp_path: Path, artifact_root) -> None:
    for version in ("1.0.0", "2.0.0"):
        make_live(cfg, tmp_path, version)
    commands.on_release(context(cfg, tmp_path, "1.0.0"))
    commands.switch(context(cfg, tmp_path), "2.0.0")
    lifecycle.retire(context(cfg, tmp_path), "1.0.0")
    # The refusal names the way back.
    with pytest.raises(TrafficError, match=r"inv revive --version 1.0.0"):
        commands.assign(context(cfg, tmp_path), ["1.0.0=0"])

    before = snapshot(artifact_root)
    for version, message in (
        ("2.0.0", "2.0.0 is live already"),
        ("9.0.0", "9.0.0 has no deployed workflows"),
    ):
        with pytest.raises(ReleaseError, match=message):
            lifecycle.revive(context(cfg, tmp_path), version)
    assert snapshot(artifact_root) == before

    lifecycle.revive(context(cfg, tmp_path), "1.0.0")
    assert is_enabled(context(cfg, tmp_path), "1.0.0")
    assert clusters(cfg, tmp_path) == {"2.0.0": list(range(8))}  # live, with no clusters
    commands.assign(context(cfg, tmp_path), ["1.0.0=0"])
    assert clusters(cfg, tmp_path) == {"1.0.0": [0], "2.0.0": list(range(1, 8))}


def test_overlapping_ranges_are_one_set(cfg, tmp_path: Path) -> None:
    for version in ("1.0.0", "2.0.0"):
        make_live(cfg, tmp_path, version)
    commands.on_release(context(cfg, tmp_path, "1.0.0"))
    commands.assign(context(cfg, tmp_path), ["2.0.0=0-3,2-5", "2.0.0=5,4"])
    assert clusters(cfg, tmp_path) == {"1.0.0": [6, 7], "2.0.0": [0, 1, 2, 3, 4, 5]}
    assert traffic.current(context(cfg, tmp_path).store).reason == "assign 2.0.0=0-5"
    assert format_clusters([3, 1, 2, 2, 1]) == "1-3"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("1.0.0=" + "9" * 10_000, "invalid clusters '99999"),
        ("9" * 10_000 + "=1", "invalid version '99999"),
        ("1.0.0=" + "1-" * 5_000, "invalid clusters '1-1-"),
    ],
)
def test_huge_values_are_one_short_line(cfg, tmp_path: Path, spec: str, message: str) -> None:
    make_live(cfg, tmp_path, "1.0.0")
    with pytest.raises((TrafficError, ReleaseError, ValueError), match=message) as refused:
        commands.assign(context(cfg, tmp_path), [spec])
    text = str(refused.value)
    assert "\n" not in text and len(text) < 200 and "characters)" in text


def test_an_unreadable_newest_record_is_named_and_superseded_by_a_full_assignment(
    cfg, tmp_path: Path, artifact_root: Path
) -> None:
    for version in ("1.0.0", "2.0.0"):
        make_live(cfg, tmp_path, version)
    commands.on_release(context(cfg, tmp_path, "1.0.0"))
    # Named as records are (time first), so it is the newest until the next one.
    corrupt = artifact_root / f"traffic/{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-broken.json"
    corrupt.write_text('{"clusters": {"1.0.0": [0, 1')
    before = snapshot(artifact_root)

    # What reads the assignment says which file and what to do, in one line.
    for partial in (["2.0.0=4-7"], ["2.0.0=0-6"]):
        with pytest.raises(traffic.CorruptRecordError) as refused:
            commands.assign(context(cfg, tmp_path), partial)
        message = str(refused.value)
        assert str(corrupt) in message and "inv traffic --all VERSION" in message
        assert "\n" not in message
    with pytest.raises(traffic.CorruptRecordError):
        traffic.clusters_for(context(cfg, tmp_path).store, "1.0.0")  # what inference reads
    assert snapshot(artifact_root) == before
    history = commands.describe_history(context(cfg, tmp_path))
    assert "first release 1.0.0" in history and f"unreadable record: {corrupt}" in history

    # An assignment of every cluster does not read it, and is in force from then on.
    commands.assign(context(cfg, tmp_path), ["1.0.0=0-3", "2.0.0=4-7"], reason="repair")
    assert clusters(cfg, tmp_path) == {"1.0.0": [0, 1, 2, 3], "2.0.0": [4, 5, 6, 7]}
    assert corrupt.read_text() == '{"clusters": {"1.0.0": [0, 1'  # history is never rewritten
