"""The feature step in bounded memory (`pipelines.feature_build`): trips read in batches,
features written in parts, and the result of one frame, row for row."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from conftest import snapshot

from {{ cookiecutter.package }}.artifacts.data_sources import read_lineage
from {{ cookiecutter.package }}.artifacts.feature_store import ParquetFeatureStore
from {{ cookiecutter.package }}.artifacts.files_source import FileSource
from {{ cookiecutter.package }}.artifacts.names import ReleaseNames
from {{ cookiecutter.package }}.ml import uniqueness
from {{ cookiecutter.package }}.ml.data import make_trips
from {{ cookiecutter.package }}.ml.features import build_features
from {{ cookiecutter.package }}.ml.sampling import bottom_k
from {{ cookiecutter.package }}.ml.schema import DataError, shape
from {{ cookiecutter.package }}.pipelines import steps

RUSH = [7, 8, 9]


def exported(folder: Path, fmt: str) -> list[Path]:
    """Three files of a team's export with invalid rows of several kinds, and one trip id
    in two different files."""
    trips = make_trips(900, 3).drop(columns=["user_cluster"])
    trips["user_id"] = "rider-" + trips["user_id"].astype(str)
    trips.loc[5, "distance_km"] = -2.0
    trips.loc[250, "pickup_hour"] = 31
    trips.loc[420, "user_id"] = ""
    trips.loc[700, "eta_minutes"] = np.nan
    trips.loc[810, "trip_id"] = trips.loc[17, "trip_id"]  # file 3 repeats a trip of file 1
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, rows in enumerate((trips.iloc[:300], trips.iloc[300:600], trips.iloc[600:])):
        paths.append(folder / f"trips-{n}.{fmt}")
        if fmt == "csv":
            rows.to_csv(paths[-1], index=False)
        else:
            rows.to_parquet(paths[-1], index=False)
    return paths


def one_frame(paths: list[Path]) -> tuple[pd.DataFrame, dict[str, int]]:
    """What shaping the whole data as one frame gives: the reference."""
    reader = pd.read_csv if paths[0].suffix == ".csv" else pd.read_parquet
    whole = pd.concat([reader(p) for p in paths], ignore_index=True)
    shaped, report = shape(whole, True, 0.05)
    return build_features(shaped, RUSH), report.invalid


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_many_tiny_batches_give_the_one_frame_result(tmp_path: Path, fmt: str) -> None:
    paths = exported(tmp_path / "exports", fmt)
    expected, invalid = one_frame(paths)
    assert invalid == {
        "trip_id: duplicate": 2,
        "distance_km: outside (0, 1000]": 1,
        "pickup_hour: outside [0, 23]": 1,
        "user_id: not an id (an integer or a string)": 1,
        "eta_minutes: empty": 1,
    }
    root = tmp_path / "artifacts"
    names = ReleaseNames("taxi", "1.0.0", "1.0.0", str(root))
    source = FileSource(str(root), str(tmp_path / f"exports/*.{fmt}"))
    created = steps.ensure_features(names, 0, 0, RUSH, source=source, batch_rows=7)
    assert created.startswith("created: 894 of 900 rows kept, 6 rows dropped")
    store = ParquetFeatureStore(str(root))
    pd.testing.assert_frame_equal(store.read("1.0.0"), expected, check_exact=True)
    manifest = store.manifest("1.0.0")
    assert manifest["rows"] == 894 and len(manifest["parts"]) == 3 * -(-300 // 7)  # per file
    lineage = read_lineage(str(root), "1.0.0")
    assert lineage["rows_invalid"] == invalid and lineage["rows"] == 900
    assert [f["rows"] for f in lineage["files"]] == [300, 300, 300]


def test_too_many_invalid_rows_across_batches_are_refused_and_nothing_is_written(
    tmp_path: Path,
) -> None:
    paths = exported(tmp_path / "exports", "parquet")
    root = tmp_path / "artifacts"
    names = ReleaseNames("taxi", "1.0.0", "1.0.0", str(root))
    source = FileSource(str(root), str(tmp_path / "exports/*.parquet"))
    before = snapshot(root)
    with pytest.raises(DataError) as refused:
        # 6 of 900 rows is 0.7%, each batch holding at most one of them.
        steps.ensure_features(names, 0, 0, RUSH, source=source, invalid_share=0.005, batch_rows=50)
    message = str(refused.value)
    assert "\n" not in message and message.startswith("6 of 900 rows of files ")
    assert message.endswith("are invalid (0.7%, more than data.max_invalid_share 0.5%): column "
                            "trip_id: duplicate in 2 rows, e.g. '3-17'")  # fmt: skip
    assert snapshot(root) == before
    assert len(paths) == 3


def test_an_ids_hash_is_the_same_in_any_batch_and_spreads_evenly() -> None:
    """`id_hashes`, which shards, samples and the uniqueness check rely on: an integer id
    and its text are one id; an id hashes the same alone, in a batch of longer ids, and as
    an Arrow column; near-equal ids (a trailing space, swapped or accented characters) do
    not collide; the value is pinned (a run's shards and sample must not change with the
    machine); 80 000 ids fall evenly into 8 shards (a chi-square test at 0.1%)."""
    ids = pd.Series(["trip-1", "trip-1 ", "1-pirt", "trïp-1", "", "t" * 40, "trip-10"])
    hashes = uniqueness.id_hashes(ids)
    assert len(set(hashes)) == len(ids)
    assert list(hashes) == [uniqueness.id_hashes(pd.Series([i]))[0] for i in ids]
    assert list(uniqueness.id_hashes(pa.chunked_array([ids[:2], ids[2:]]))) == list(hashes)
    assert list(uniqueness.id_hashes(pd.Series([411, 7]))) == list(
        uniqueness.id_hashes(pd.Series(["411", "7"]))
    )
    mixed = pd.Series([411, "u7"], dtype=object)  # a column of ints and text, as objects
    assert list(uniqueness.id_hashes(mixed)) == list(uniqueness.id_hashes(pd.Series(["411", "u7"])))
    assert int(hashes[0]) == 3320593255791898779  # hash of "trip-1", as it was released
    many = uniqueness.id_hashes(pd.Series([f"t{i}" for i in range(80_000)]))
    counts = np.bincount((many % np.uint64(8)).astype(int), minlength=8)
    chi_square = float(((counts - 10_000) ** 2 / 10_000).sum())
    assert chi_square < 24.3, counts  # 7 degrees of freedom, p = 0.001


def test_a_duplicate_is_found_exactly_even_when_hashes_collide(monkeypatch) -> None:
    """Every id hashed into 4 values: all collide, only the repeated ids are duplicates."""
    real = uniqueness.id_hashes
    monkeypatch.setattr(uniqueness, "id_hashes", lambda ids: real(ids) % np.uint64(4))
    batches = [pd.Series(["a", "b", "c"]), pd.Series(["d", "a", None]), pd.Series(["e", "e"])]
    assert uniqueness.duplicate_ids(lambda: iter(batches)) == {"a", "e"}
    monkeypatch.undo()
    assert uniqueness.duplicate_ids(lambda: iter(batches)) == {"a", "e"}
    assert uniqueness.duplicate_ids(lambda: iter([pd.Series(["x", "y"])])) == set()


# Builds a feature version of many parts, pausing after each part it stores: the test
# kills it there, between its first part and its commit point.
SLOW_WRITE = """
import sys, time
from {{ cookiecutter.package }}.artifacts import feature_store
from {{ cookiecutter.package }}.artifacts.files_source import FileSource
from {{ cookiecutter.package }}.artifacts.names import ReleaseNames
from {{ cookiecutter.package }}.pipelines import steps

# Every part (`write` and `write_file` both store through `_store`): after the second the
# writer waits to be killed, so the kill always lands between parts.
store = feature_store.ParquetFeatureWriter._store
def stalled(self, data, rows):
    store(self, data, rows)
    time.sleep(600 if len(self.parts) >= 2 else 0.05)
feature_store.ParquetFeatureWriter._store = stalled
root, pattern = sys.argv[1:3]
names = ReleaseNames("taxi", "1.0.0", "1.0.0", root)
steps.ensure_features(names, 0, 0, [7, 8, 9], source=FileSource(root, pattern), batch_rows=50)
"""


def test_a_feature_write_killed_between_parts_is_not_read_and_the_rerun_completes(
    tmp_path: Path,
) -> None:
    paths = exported(tmp_path / "exports", "parquet")
    root = tmp_path / "artifacts"
    pattern = str(tmp_path / "exports/*.parquet")
    step = subprocess.Popen([sys.executable, "-c", SLOW_WRITE, str(root), pattern])
    deadline = time.monotonic() + 120
    while len(list(root.glob("features/1.0.0/train/*-part-*.parquet"))) < 2:
        assert step.poll() is None and time.monotonic() < deadline, "no parts were written"
        time.sleep(0.02)
    os.kill(step.pid, signal.SIGKILL)
    step.wait()
    store = ParquetFeatureStore(str(root))
    assert not store.exists("1.0.0")  # its parts are there; no manifest commits them
    names = ReleaseNames("taxi", "1.0.0", "1.0.0", str(root))
    source = FileSource(str(root), pattern)
    assert steps.ensure_features(names, 0, 0, RUSH, source=source).startswith("created:")
    pd.testing.assert_frame_equal(store.read("1.0.0"), one_frame(paths)[0], check_exact=True)
    # The dead attempt's parts stay, unread: the manifest names the rerun's only.
    listed = json.loads((root / "features/1.0.0/train/manifest.json").read_text())["parts"]
    on_disk = list(root.glob("features/1.0.0/train/*-part-*.parquet"))
    assert len(on_disk) > len(listed) and all(p["key"].endswith(".parquet") for p in listed)


def test_training_uses_a_fixed_sample_of_train_rows_read_part_by_part(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    names = ReleaseNames("taxi", "1.0.0", "1.0.0", str(root))
    source = FileSource(str(root), str(tmp_path / "exports/*.parquet"))
    exported(tmp_path / "exports", "parquet")
    steps.ensure_features(names, 0, 0, RUSH, source=source, batch_rows=100)
    ridge = {"_target_": "sklearn.linear_model.Ridge"}
    used = []
    for run in range(2):  # a rerun trains on the same trips
        sample = tmp_path / f"sample-{run}.json"
        metrics = steps.train_and_evaluate(
            names, ridge, 0.2, 1, str(tmp_path / "model.pkl"), None, 250, str(sample)
        )
        assert metrics["n_test"] == 50  # 20% of the 250 sampled trips
        written = json.loads(sample.read_text())
        # Beside the sample, the drift reference of its 200 training trips (`ml.drift`).
        assert written.pop("reference")["n"] == 200
        used.append(written)
    assert (
        used[0]
        == used[1]
        == {
            "rows_seen": 894,
            "rows_used": 250,
            "sample": "the 250 trips with the smallest 64-bit hash of trip_id "
            "(`ml.uniqueness.id_hashes`)",
        }
    )
    # The sample does not depend on how the rows are cut into parts, nor on their order.
    features = ParquetFeatureStore(str(root)).read("1.0.0")
    one, _ = bottom_k([features], 250)
    shuffled = features.sample(frac=1, random_state=3)
    parts, _ = bottom_k((shuffled.iloc[i : i + 97] for i in range(0, 894, 97)), 250)
    assert set(one.trip_id) == set(parts.trip_id) and len(one) == 250
    everything, described = bottom_k((features.iloc[i : i + 300] for i in (0, 300, 600)), None)
    assert len(everything) == 894 and described["sample"] == "all"
