"""Data sources: synthetic, files (Parquet and CSV written here, at another path) and BigQuery
(a real emulator); the declared schema's refusals; lineage; outcomes."""

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import inv_here, snapshot

from {{ cookiecutter.package }}.artifacts.bigquery_source import BigQuerySource
from {{ cookiecutter.package }}.artifacts.data_sources import (
    DataSourceError,
    SyntheticSource,
    read_lineage,
    read_outcomes,
)
from {{ cookiecutter.package }}.artifacts.feature_store import ParquetFeatureStore
from {{ cookiecutter.package }}.artifacts.files_source import FileSource
from {{ cookiecutter.package }}.artifacts.intervals import Interval
from {{ cookiecutter.package }}.artifacts.names import ReleaseNames, names_for
from {{ cookiecutter.package }}.artifacts.store import open_store
from {{ cookiecutter.package }}.errors import ReleaseError
from {{ cookiecutter.package }}.ml import TARGET
from {{ cookiecutter.package }}.ml.data import make_trips
from {{ cookiecutter.package }}.ml.features import build_features
from {{ cookiecutter.package }}.ml.schema import DataError, schema_table
from {{ cookiecutter.package }}.pipelines import inference_steps, steps
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.release.workflows import check_features_source, report_dropped_rows
from {{ cookiecutter.package }}.reports.versions import data_lineage
from {{ cookiecutter.package }}.version import PROJECT_ROOT

RUSH = [7, 8, 9]


def names(root: Path, version: str = "1.0.0", feature_version: str | None = None):
    return ReleaseNames("taxi", version, feature_version or version, str(root))


def trips_file(folder: Path, name: str, n: int = 300, seed: int = 5, **changes) -> Path:
    """Trips as a team would export them: extra columns, a user id instead of a cluster."""
    trips = make_trips(n, seed).drop(columns=["user_cluster"]).assign(driver="someone")
    for column, value in changes.items():
        trips[column] = value
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if name.endswith(".csv"):
        trips.to_csv(path, index=False)
    else:
        trips.to_parquet(path, index=False)
    return path


def test_the_synthetic_source_gives_the_generators_features_exactly(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    source = SyntheticSource(str(root), n_trips=500, seed=3)
    created = steps.ensure_features(names(root), 500, 3, RUSH, source=source)
    assert created == "created: 500 rows, all valid"
    expected = build_features(make_trips(500, 3), RUSH)
    features = ParquetFeatureStore(str(root)).read("1.0.0")
    pd.testing.assert_frame_equal(features, expected, check_exact=True)
    lineage = read_lineage(str(root), "1.0.0")
    assert lineage["source"] == "synthetic" and lineage["rows"] == 500
    assert lineage["location"] == "generator n_trips=500 seed=3"


def test_files_at_another_path_are_read_and_recorded_with_their_sha256(tmp_path: Path) -> None:
    data = tmp_path / "elsewhere" / "trips"
    first, second = trips_file(data, "a.parquet", seed=1), trips_file(data, "b.parquet", seed=2)
    root = tmp_path / "artifacts"
    source = FileSource(str(root), path=str(data / "*.parquet"))
    trips, _ = source.read_trips(["trip_id", "user_id", "distance_km", TARGET])
    assert list(trips.columns) == ["trip_id", "user_id", "distance_km", TARGET]  # declared only

    steps.ensure_features(names(root), 0, 0, RUSH, source=source)
    lineage = read_lineage(str(root), "1.0.0")
    assert lineage["source"] == "files" and lineage["rows"] == 600
    assert lineage["files"] == [
        {
            "path": str(p.resolve()),
            "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
            "rows": 300,
        }
        for p in (first, second)
    ]
    features = ParquetFeatureStore(str(root)).read("1.0.0")
    assert len(features) == 600 and set(features.user_cluster) == set(range(8))  # from user_id

    # The model's metadata carries the lineage.
    model_path = tmp_path / "model.pkl"
    metrics = steps.train_and_evaluate(
        names(root), {"_target_": "sklearn.linear_model.Ridge"}, 0.2, 1, str(model_path)
    )
    steps.publish_model(names(root), str(model_path), metrics, "abc", {})
    metadata = json.loads((root / "models/1.0.0/metadata.json").read_text())
    assert metadata["data"]["files"] == lineage["files"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"pickup_hour": "8am"}, "column pickup_hour: not int64 in 300 rows, e.g. '8am'"),
        ({"distance_km": -1.0}, "column distance_km: outside (0, 1000] in 300 rows"),
    ],
)
def test_a_csv_with_a_wrong_column_is_one_line_and_writes_nothing(
    tmp_path: Path, changes: dict, message: str
) -> None:
    path = trips_file(tmp_path / "data", "trips.csv", **changes)
    root = tmp_path / "artifacts"
    root.mkdir()
    before = snapshot(root)
    with pytest.raises(DataError) as refused:
        steps.ensure_features(names(root), 0, 0, RUSH, source=FileSource(str(root), str(path)))
    text = str(refused.value)
    assert message in text and "300 of 300 rows" in text and "\n" not in text
    assert snapshot(root) == before


def test_a_missing_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "trips.csv"
    make_trips(50, 1).drop(columns=["weekday"]).to_csv(path, index=False)
    root = tmp_path / "artifacts"
    with pytest.raises(DataError, match="column 'weekday' is missing from files"):
        steps.ensure_features(names(root), 0, 0, RUSH, source=FileSource(str(root), str(path)))
    assert not root.exists()


def test_a_few_invalid_rows_are_dropped_and_counted(tmp_path: Path) -> None:
    trips = make_trips(400, 2)
    trips.loc[3, "pickup_hour"] = 31
    trips.loc[7, "distance_km"] = np.nan
    path = tmp_path / "trips.parquet"
    trips.to_parquet(path, index=False)
    root = tmp_path / "artifacts"
    outcome = steps.ensure_features(
        names(root), 0, 0, RUSH, source=FileSource(str(root), str(path)), invalid_share=0.01
    )
    assert outcome.startswith("created: 398 of 400 rows kept")
    lineage = read_lineage(str(root), "1.0.0")
    assert lineage["rows_valid"] == 398
    assert lineage["rows_invalid"] == {
        "distance_km: empty": 1,
        "pickup_hour: outside [0, 23]": 1,
    }
    with pytest.raises(DataError, match=r"2 of 400 rows .* \(0.5%, more than .* 0.1%\)"):
        steps.ensure_features(
            names(root, "2.0.0"),
            0,
            0,
            RUSH,
            source=FileSource(str(root), str(path)),
            invalid_share=0.001,
        )
    assert not (root / "features/2.0.0").exists()


def test_dropped_rows_are_told_by_the_release_and_by_versions_where(
    cfg, tmp_path: Path, artifact_root: Path, capsys
) -> None:
    """Under data.max_invalid_share a release goes on: what it dropped, and why, is said in
    its output and in `inv versions --where`, not only in the lineage record."""
    path = trips_file(tmp_path, "trips.parquet", n=2000, seed=3)
    trips = pd.read_parquet(path)
    trips.loc[[5, 50, 500, 700, 900, 1999], "distance_km"] = np.inf
    trips.to_parquet(path, index=False)
    cfg.data_source = {
        "_target_": f"{cfg.package}.artifacts.files_source.FileSource",
        "path": str(path),
    }
    ctx = ReleaseContext(cfg=cfg, names=names_for(cfg))
    steps.ensure_features(ctx.names, 0, 0, RUSH, ctx.feature_store, ctx.data_source)
    capsys.readouterr()
    report_dropped_rows(ctx)
    said = "1994 rows, 6 rows dropped (distance_km: outside (0, 1000])"
    assert capsys.readouterr().out == f"features {cfg.version}: {said}\n"
    where = data_lineage(read_lineage(str(artifact_root), cfg.version))
    assert where.endswith("; 1994 rows; 6 rows dropped (distance_km: outside (0, 1000])")


def test_a_files_window_and_files_outcomes(tmp_path: Path) -> None:
    trips = make_trips(300, 6)
    trips["picked_up_at"] = pd.to_datetime("2026-01-01", utc=True) + pd.to_timedelta(
        np.arange(300), unit="h"
    )
    trips.to_parquet(tmp_path / "trips.parquet", index=False)
    root = str(tmp_path / "artifacts")
    since = FileSource(
        root,
        str(tmp_path / "trips.parquet"),
        window={"column": "picked_up_at", "start": "2026-01-10", "end": None},
    )
    kept, lineage = since.read_trips(["trip_id", "distance_km", TARGET])
    assert len(kept) == 300 - 9 * 24 and "picked_up_at" not in kept  # an open end
    assert lineage["window"]["start"] == "2026-01-10"

    observed = trips[["trip_id", TARGET]].assign(observed_at=trips["picked_up_at"])
    observed.to_csv(tmp_path / "outcomes.csv", index=False)
    source = FileSource(
        root, str(tmp_path / "trips.parquet"), outcomes_path=str(tmp_path / "*.csv")
    )
    window = source.outcomes(datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 3, tzinfo=UTC))
    assert len(window) == 24 and set(window.columns) == {"trip_id", TARGET, "observed_at"}


@pytest.mark.slow
def test_files_in_a_bucket_are_read_through_the_stores_gcs_client(
    gcs_root: str, tmp_path: Path
) -> None:
    """Against a real GCS emulator (fake-gcs-server): a glob in gs:// names the objects."""
    bucket = open_store(gcs_root.rsplit("/", 1)[0])
    for name, seed in (("exports/trips-1.parquet", 1), ("exports/trips-2.parquet", 2)):
        trips_file(tmp_path, "local.parquet", n=100, seed=seed)
        bucket.write(name, (tmp_path / "local.parquet").read_bytes())
    bucket.write("exports/notes.txt", b"not trips")
    source = FileSource(gcs_root, gcs_root.rsplit("/", 1)[0] + "/exports/trips-*.parquet")
    source.check()
    trips, lineage = source.read_trips(["trip_id", "user_id", TARGET])
    assert len(trips) == 200 and [f["path"].rsplit("/", 1)[1] for f in lineage["files"]] == [
        "trips-1.parquet",
        "trips-2.parquet",
    ]
    missing = FileSource(gcs_root, gcs_root.rsplit("/", 1)[0] + "/elsewhere/*.parquet")
    with pytest.raises(DataSourceError, match="no trips file matches"):
        missing.check()


def test_outcomes_of_a_synthetic_batch_join_every_predicted_trip_once(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    version = names(root)
    steps.ensure_features(version, 400, 1, RUSH)
    model_path = tmp_path / "model.pkl"
    metrics = steps.train_and_evaluate(
        version, {"_target_": "sklearn.linear_model.Ridge"}, 0.2, 1, str(model_path)
    )
    steps.publish_model(version, str(model_path), metrics, "abc", {})
    batch = tmp_path / "batch.parquet"
    source = SyntheticSource(str(root), 400, 1)
    since = datetime.now(UTC) - timedelta(seconds=1)
    record = tmp_path / "batch.json"
    inference_steps.make_batch_features(
        version, 300, 77, RUSH, str(batch), str(record), Interval.resolve(), source
    )
    written = inference_steps.predict_batch(version, str(batch), str(record), "run-1")
    predicted = pd.read_parquet(written)
    outcomes = read_outcomes(source, since, datetime.now(UTC) + timedelta(seconds=1))
    joined = predicted.merge(outcomes, on="trip_id", how="left", validate="one_to_one")
    assert len(joined) == len(predicted) == 300 and joined["eta_minutes_y"].notna().all()
    # The outcomes are the batch's true durations, which the model predicts closely.
    assert (joined["eta_minutes_x"] - joined["eta_minutes_y"]).abs().mean() < 3
    # Outside the window: none.
    assert read_outcomes(source, since - timedelta(hours=2), since - timedelta(hours=1)).empty


def test_features_are_reused_only_from_the_source_they_were_built_from(
    cfg, tmp_path: Path, artifact_root: Path
) -> None:
    first = trips_file(tmp_path / "data-a", "trips.parquet", seed=1)
    other = trips_file(tmp_path / "data-b", "trips.parquet", seed=2)
    cfg.data_source = {
        "_target_": f"{cfg.package}.artifacts.files_source.FileSource",
        "path": str(first),
    }
    ctx = ReleaseContext(cfg=cfg, names=names_for(cfg))
    steps.ensure_features(ctx.names, 0, 0, RUSH, ctx.feature_store, ctx.data_source)
    check_features_source(ctx)  # the same source: fine

    cfg.data_source.path = str(other)
    before = snapshot(artifact_root)
    with pytest.raises(ReleaseError) as refused:
        check_features_source(ReleaseContext(cfg=cfg, names=names_for(cfg)))
    assert str(refused.value) == (
        f"features {cfg.version} were built from files {first}; this config reads files "
        f"{other}: bump `features.version` or restore the source"
    )
    assert snapshot(artifact_root) == before


@pytest.mark.slow
def test_a_bigquery_table_is_read_at_a_recorded_snapshot(bigquery_emulator: str, tmp_path) -> None:
    from {{ cookiecutter.package }}.artifacts.bigquery_client import client

    bq = client("local")
    bq.create_dataset("raw_trips", exists_ok=True)
    trips = make_trips(200, 4)
    types = {"O": "STRING", "f": "FLOAT64", "i": "INT64"}
    columns = ", ".join(f"{c} {types[trips[c].dtype.kind]}" for c in trips.columns)
    bq.query(f"CREATE TABLE raw_trips.trips ({columns}, picked_up_at TIMESTAMP)").result()
    values = ", ".join(
        "("
        + ", ".join(repr(v) if isinstance(v, str) else str(v) for v in row)
        + f", TIMESTAMP '2026-01-0{1 + i % 2} 10:00:00+00')"
        for i, row in enumerate(trips.itertuples(index=False))
    )
    bq.query(f"INSERT INTO raw_trips.trips VALUES {values}").result()

    root = tmp_path / "artifacts"
    window = {"column": "picked_up_at", "start": "2026-01-02", "end": None}
    source = BigQuerySource("local", table="local.raw_trips.trips", window=window)
    outcome = steps.ensure_features(names(root), 0, 0, RUSH, source=source)
    assert outcome == "created: 100 rows, all valid"  # the window: every second trip
    lineage = read_lineage(str(root), "1.0.0")
    assert lineage["source"] == "bigquery" and lineage["location"] == "local.raw_trips.trips"
    assert lineage["rows"] == 100 and "FOR SYSTEM_TIME AS OF TIMESTAMP '" in lineage["sql"]
    snapshot_at = datetime.fromisoformat(lineage["snapshot"])
    assert abs((datetime.now(UTC) - snapshot_at).total_seconds()) < 120

    # An inference run reads the trips of its interval: by the batch table's time column,
    # or by a query given @start and @end. An interval without trips is an empty batch,
    # or an error when a batch is required.
    first_day = Interval(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    table = "local.raw_trips.trips"
    by_column = BigQuerySource("local", table=table, batch_table=table, batch_column="picked_up_at")
    batch, read = by_column.inference_batch(0, 0, ["trip_id", "distance_km"], first_day)
    assert len(batch) == read["rows"] == 100 and read["start"] == "2026-01-01T00:00:00+00:00"
    assert set(batch.trip_id) == set(trips.trip_id[::2])  # the rows of 2026-01-01
    by_query = BigQuerySource(
        "local", table=table, batch_query="SELECT trip_id, distance_km FROM raw_trips.trips "
        "WHERE picked_up_at >= @start AND picked_up_at < @end",
    )  # fmt: skip
    queried, _ = by_query.inference_batch(0, 0, ["trip_id", "distance_km"], first_day)
    assert sorted(queried.trip_id) == sorted(batch.trip_id)
    # An interval of two days reads both (issue 50: BigQuery's @start/@end span it whole).
    both_days = Interval(first_day.start, datetime(2026, 1, 3, tzinfo=UTC))
    for source_of_two in (by_column, by_query):
        two, _ = source_of_two.inference_batch(0, 0, ["trip_id", "distance_km"], both_days)
        assert sorted(two.trip_id) == sorted(trips.trip_id)
    before = Interval(datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 2, tzinfo=UTC))
    assert by_column.inference_batch(0, 0, ["trip_id"], before)[0].empty
    by_column.require_batch = True
    with pytest.raises(DataSourceError, match=r"found no trips in \[2025-01-01, 2025-01-02\)"):
        by_column.inference_batch(0, 0, ["trip_id"], before)

    # Rows added later are not in a read at the recorded snapshot: the same rows again.
    bq.query("DELETE FROM raw_trips.trips WHERE TRUE").result()
    again, _ = source.read_trips(["trip_id", "distance_km"], snapshot=snapshot_at)
    assert len(again) == 100
    assert ParquetFeatureStore(str(root)).exists("1.0.0")


def test_sample_data_is_read_as_a_teams_export_and_refuses_to_overwrite(tmp_path: Path) -> None:
    """`inv sample-data` as a user runs it: trips every source reads and the schema takes
    whole (string rider ids, extra columns), a batch whose outcomes join one to one."""
    out = tmp_path / "exports"
    code, said, _ = inv_here(
        "sample-data", "--out", str(out), "--rows", "800", "--format", "csv", "--with-outcomes"
    )
    assert code == 0 and said.startswith(f"wrote {out / 'trips.csv'}\n")
    assert schema_table() in said
    root = tmp_path / "artifacts"
    assert said.count("daily partitions, dt=") == 2  # batch/ and outcomes/, a line each
    source = FileSource(str(root), str(out / "trips.csv"),
                        batch_path=str(out / "batch/*/*.csv"),
                        outcomes_path=str(out / "outcomes/*/*.csv"))  # fmt: skip
    outcome = steps.ensure_features(names(root), 0, 0, RUSH, source=source)
    assert outcome == "created: 800 rows, all valid"
    batch, read = source.inference_batch(
        0, 0, ["trip_id", "user_id", "distance_km"], Interval.resolve()
    )
    outcomes = source.outcomes(datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC))
    assert len(batch) == 700 and sorted(outcomes["trip_id"]) == sorted(batch["trip_id"])
    assert len(read["files"]) == 7  # the week's daily partitions

    before = snapshot(out)
    code, _, error = inv_here("sample-data", "--out", str(out), "--format", "csv")
    assert code == 1 and error.strip() == (
        f"error: {out / 'trips.csv'} exists: sample data never overwrites a file"
    )
    assert snapshot(out) == before
    for bad, said in (
        (["--format", "xlsx"], "unknown format 'xlsx'"),
        (["--rows", "1e6"], "--rows"),
    ):
        code, _, error = inv_here("sample-data", "--out", str(tmp_path / "other"), *bad)
        assert code == 1 and said in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "other").exists()
    a_file = out / "trips.csv"  # issue 50: --out naming an existing file gave a traceback
    code, _, error = inv_here("sample-data", "--out", str(a_file))
    assert code == 1 and error.strip() == f"error: --out {a_file} is a file: name a folder " + (
        "(created if missing)"
    )
    assert snapshot(out) == before


def test_the_readmes_schema_table_is_the_declared_schema() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    table = readme.split("<!-- schema:start -->\n")[1].split("\n<!-- schema:end -->")[0]
    assert table == schema_table()


def test_sample_data_of_any_days_from_any_start(tmp_path: Path) -> None:
    """`inv sample-data --with-outcomes --days 10 --start D --rows-per-day 40`: ten daily
    partitions from D, about 40 trips each, their outcomes beside them; days that have not
    passed are refused in one line, nothing written."""
    out = tmp_path / "exports"
    code, _, err = inv_here("sample-data", "--out", str(out), "--with-outcomes", "--days", "10",
                            "--start", "2026-01-30", "--rows-per-day", "40")  # fmt: skip
    assert code == 0, err
    days = sorted(p.name for p in (out / "batch").iterdir())
    assert days == [f"dt=2026-{d}" for d in ("01-30", "01-31", *(f"02-0{i}" for i in range(1, 9)))]
    trips = pd.concat(pd.read_parquet(p) for p in (out / "batch").glob("*/*.parquet"))
    assert 10 * 25 < len(trips) < 10 * 55 and trips.trip_id.is_unique
    outcomes = pd.concat(pd.read_parquet(p) for p in (out / "outcomes").glob("*/*.parquet"))
    assert sorted(outcomes.trip_id) == sorted(trips.trip_id)
    later = tmp_path / "later"
    code, _, err = inv_here("sample-data", "--out", str(later), "--with-outcomes",
                            "--start", "2099-01-01")  # fmt: skip
    assert code == 1 and err.strip().startswith("error: --start 2099-01-01 and --days 7 end")
    assert not later.exists()
