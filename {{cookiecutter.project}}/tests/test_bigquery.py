"""Features and predictions in BigQuery, against a real emulator (bqemulator, on loopback)
driven by the real google-cloud-bigquery client.

Slow tier: the emulator takes seconds to start.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SMALL

from {{ cookiecutter.package }}.artifacts.bigquery import BigQueryFeatureStore
from {{ cookiecutter.package }}.artifacts.bigquery_client import Dataset, client
from {{ cookiecutter.package }}.artifacts.bigquery_predictions import BigQueryPredictions
from {{ cookiecutter.package }}.artifacts.bigquery_source import BigQuerySource
from {{ cookiecutter.package }}.artifacts.data_sources import read_lineage
from {{ cookiecutter.package }}.artifacts.names import ReleaseNames
from {{ cookiecutter.package }}.artifacts.store import AlreadyExistsError, StoreError
from {{ cookiecutter.package }}.config import load_config
from {{ cookiecutter.package }}.ml.data import make_trips
from {{ cookiecutter.package }}.ml.features import build_features
from {{ cookiecutter.package }}.ml.paired import Verdict, holm, overall, paired_sums
from {{ cookiecutter.package }}.ml.schema import DataError, shape
from {{ cookiecutter.package }}.ml.users import user_cluster, user_cluster_sql
from {{ cookiecutter.package }}.pipelines import steps
from {{ cookiecutter.package }}.release import evidence
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.release.ticks import run_inference
from {{ cookiecutter.package }}.release.workflows import deploy_workflows, train_adhoc
from {{ cookiecutter.package }}.reports import versions

pytestmark = pytest.mark.slow

LAYOUTS = ["per_version", "version_column"]


@pytest.fixture
def dataset(bigquery_emulator: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A dataset of this test's own (the emulator is shared by the session)."""
    name = "t_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:60].strip("_")
    yield name
    client("local").delete_dataset(name, delete_contents=True, not_found_ok=True)


def features(n: int, seed: int, rush_hours: list[int]) -> pd.DataFrame:
    return build_features(make_trips(n, seed), rush_hours)


def tables_of(dataset: str) -> dict[str, int]:
    """Every table of the dataset and its row count: what a refusal must leave unchanged."""
    bq = client("local")
    return {
        t.table_id: next(
            iter(
                bq.query(
                    f"SELECT COUNT(*) AS n FROM `{t.full_table_id.replace(':', '.')}`"
                ).result()
            )
        ).n
        for t in bq.list_tables(dataset)
    }


@pytest.mark.parametrize("layout", LAYOUTS)
def test_two_feature_versions_side_by_side(dataset: str, layout: str) -> None:
    store = BigQueryFeatureStore("local", dataset, layout=layout)
    first, second = features(300, 1, [7, 8]), features(200, 2, [16, 17])
    assert not store.exists("1.0.0")
    store.write("1.0.0", first)
    store.write("1.1.0", second)

    assert store.exists("1.0.0") and store.exists("1.1.0")
    pd.testing.assert_frame_equal(store.read("1.0.0"), first, check_dtype=False)
    pd.testing.assert_frame_equal(store.read("1.1.0"), second, check_dtype=False)
    assert store.read("1.0.0").dtypes.equals(first.dtypes)  # int64 stays int64, not Int64
    if layout == "per_version":
        assert store.location("1.1.0") == f"bigquery://local.{dataset}.train_v1_1_0"
        assert set(tables_of(dataset)) == {"train_v1_0_0", "train_v1_1_0"}
    else:
        assert store.location("1.1.0") == f"bigquery://local.{dataset}.train[feature_version=1.1.0]"
        assert tables_of(dataset) == {"train": 500, "train__commits": 2}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_retention_removes_one_feature_version_commit_point_first(
    dataset: str, layout: str
) -> None:
    """`inv gc`'s view of BigQuery features: what a version holds, and its removal; the
    other version is untouched and a second removal is a no-op."""
    store = BigQueryFeatureStore("local", dataset, layout=layout)
    kept = features(200, 2, [16, 17])
    store.write("1.0.0", features(300, 1, [7, 8]))
    store.write("1.1.0", kept)
    held = store.holdings("1.0.0")
    if layout == "per_version":
        assert [h.address for h in held] == [f"bigquery://local.{dataset}.train_v1_0_0"]
    else:
        rows = "[feature_version=1.0.0]"
        assert [h.address for h in held] == [
            f"bigquery://local.{dataset}.train__commits{rows}",
            f"bigquery://local.{dataset}.train{rows}",
        ]
    store.remove("1.0.0", held[0])
    assert not store.exists("1.0.0")  # the commit point went first
    for item in held:
        store.remove("1.0.0", item)
        store.remove("1.0.0", item)
    assert store.holdings("1.0.0") == []
    if layout == "version_column":
        assert tables_of(dataset) == {"train": 200, "train__commits": 1}
    else:
        assert set(tables_of(dataset)) == {"train_v1_1_0"}
    pd.testing.assert_frame_equal(store.read("1.1.0"), kept, check_dtype=False)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_feature_version_is_written_once(dataset: str, layout: str) -> None:
    store = BigQueryFeatureStore("local", dataset, layout=layout)
    store.write("1.0.0", features(100, 1, [7]))
    before = tables_of(dataset)
    with pytest.raises(AlreadyExistsError, match="feature versions are immutable"):
        store.write("1.0.0", features(100, 9, [8]))
    assert tables_of(dataset) == before
    assert store.read("1.0.0")["trip_id"].iloc[0] == "1-0"  # the first write's rows


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_write_killed_half_way_is_not_complete_and_the_next_write_finishes(
    dataset: str, layout: str
) -> None:
    store = BigQueryFeatureStore("local", dataset, layout=layout)
    frame = features(100, 1, [7])
    rows = frame.assign(row_number=range(len(frame)))
    # What a run killed after loading its rows and before its commit point leaves behind.
    if layout == "per_version":
        store.data.ensure_dataset()
        store.data.create_table("train_v1_0_0", rows)
        store.data.load("train_v1_0_0", rows, "WRITE_EMPTY")
    else:
        store.write("0.9.0", features(10, 3, [7]))  # creates the shared tables
        store.data.load(
            "train",
            rows.assign(feature_version="1.0.0")[["feature_version", *rows.columns]],
            "WRITE_APPEND",
        )
    assert not store.exists("1.0.0")
    with pytest.raises(StoreError, match="no features 1.0.0"):
        store.read("1.0.0")

    store.write("1.0.0", frame)
    pd.testing.assert_frame_equal(store.read("1.0.0"), frame, check_dtype=False)
    assert len(store.read("1.0.0")) == 100  # the dead run's rows are gone, not doubled


def test_a_pinned_feature_version_is_reused_by_the_pipeline_steps(
    dataset: str, tmp_path: Path
) -> None:
    store = BigQueryFeatureStore("local", dataset, layout="version_column")
    first = ReleaseNames("taxi", "1.0.0", "1.0.0", str(tmp_path))
    assert steps.ensure_features(first, 300, 1, [7, 8], store).startswith("created")
    pinned = ReleaseNames("taxi", "1.1.0", "1.0.0", str(tmp_path))
    before = tables_of(dataset)
    assert steps.ensure_features(pinned, 999, 5, [9], store) == "reused"
    assert tables_of(dataset) == before
    missing = ReleaseNames("taxi", "1.2.0", "1.1.5", str(tmp_path))
    with pytest.raises(
        StoreError,
        match=f"pinned feature version 1.1.5 does not exist at bigquery://local.{dataset}.train",
    ):
        steps.ensure_features(missing, 300, 1, [7], store)
    assert tables_of(dataset) == before


def test_predictions_of_two_live_versions_share_one_table_split_by_cluster(
    dataset: str,
) -> None:
    sink = BigQueryPredictions("local", dataset)
    batch = features(400, 4, [7]).drop(columns=["eta_minutes"])
    for version, clusters in (("1.0.0", [0, 1, 2, 3, 4, 5]), ("1.1.0", [6, 7])):
        rows = batch[batch["user_cluster"].isin(clusters)]
        frame = pd.DataFrame(
            {
                "trip_id": rows["trip_id"],
                "user_cluster": rows["user_cluster"],
                "eta_minutes": 10.0,
                "model_version": version,
            }
        )
        where = sink.write(version, f"run-{version}", frame)
        assert where.endswith(f"[model_version={version}][run_id=run-{version}]")
    with pytest.raises(AlreadyExistsError):
        sink.write("1.1.0", "run-1.1.0", frame)
    assert sink.runs("1.0.0") == ["run-1.0.0"] and sink.runs("2.0.0") == []

    split = sink.split()
    served = {v: set(g["user_cluster"]) for v, g in split.groupby("model_version")}
    assert served == {"1.0.0": {0, 1, 2, 3, 4, 5}, "1.1.0": {6, 7}}
    assert split["n_predictions"].sum() == len(batch)

    # Retention: a run older than the cutoff is its rows, removed without the other's.
    now = datetime.now(UTC)
    assert sink.holdings("1.0.0", now - timedelta(hours=1)) == []
    (held,) = sink.holdings("1.0.0", now + timedelta(minutes=1))
    # (Its bytes are the table's share, which the emulator does not report: 0 here.)
    assert held.address == f"{sink.location('1.0.0')}[run_id=run-1.0.0]"
    sink.remove("1.0.0", held)
    sink.remove("1.0.0", held)  # gone already: a no-op
    assert sink.runs("1.0.0") == [] and sink.runs("1.1.0") == ["run-1.1.0"]
    assert set(sink.split()["model_version"]) == {"1.1.0"}


def test_ab_verdicts_run_as_one_query_in_bigquery(
    dataset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Predictions and outcomes both in BigQuery: the paired sums come from one query, with
    the numbers of the local path (`ml.paired.paired_sums`) on the same rows."""
    sink = BigQueryPredictions("local", dataset)
    trips = make_trips(500, 3)
    rng = np.random.default_rng(0)
    for version, shift, clusters in (("1.0.0", 0.0, range(6)), ("1.1.0", 3.0, [6, 7])):
        for run in ("run-1", "run-2"):  # a trip predicted twice counts once, the latest
            frame = trips[["trip_id", "user_cluster"]].assign(
                eta_minutes=trips["eta_minutes"] + shift + rng.normal(0, 1.5, len(trips)),
                model_version=version,
                served=trips["user_cluster"].isin(clusters),
            )
            sink.write(version, f"{run}-{version}", frame)
    outcomes = trips[["trip_id", "eta_minutes"]].assign(
        observed_at=pd.Timestamp.now(tz="UTC").floor("us")
    )
    sink.data.create_table("outcomes", outcomes)
    sink.data.load("outcomes", outcomes, "WRITE_APPEND")
    cfg = load_config(
        "local",
        [
            f"env.artifact_root={tmp_path / 'artifacts'}",
            "predictions=bigquery",
            f"env.bigquery.predictions_dataset={dataset}",
            "data_source=bigquery",
            "data_source.table=unused",
            f"data_source.outcomes_table=local.{dataset}.outcomes",
        ],
    )
    ctx = ReleaseContext.create(cfg)
    local = paired_sums(sink.read("1.0.0", True), sink.read("1.1.0", True), outcomes)

    def pulled(*args: object, **kwargs: object) -> None:
        raise AssertionError("rows were pulled out of BigQuery")

    monkeypatch.setattr(BigQueryPredictions, "read", pulled)
    comparison = evidence.compare(ctx, "1.1.0", "1.0.0")
    assert comparison.overall.n == 500 and comparison.overall.verdict == "worse"
    assert sorted(comparison.clusters) == sorted(local)
    for cluster, verdict in comparison.clusters.items():
        for name, value in vars(local[cluster]).items():
            assert getattr(verdict.sums, name) == pytest.approx(value, rel=1e-9), name
    # The same always-valid interval, overall and per cluster (Holm-adjusted), to 1e-9.
    rules = evidence.gates(ctx)
    pandas_overall = Verdict("1.1.0", "1.0.0", overall(local), rules)
    assert comparison.overall.interval == pytest.approx(pandas_overall.interval, abs=1e-9)
    pandas_clusters = holm({c: Verdict("1.1.0", "1.0.0", s, rules) for c, s in local.items()})
    for cluster, verdict in comparison.clusters.items():
        assert verdict.interval == pytest.approx(pandas_clusters[cluster].interval, abs=1e-9)
        assert verdict.verdict == pandas_clusters[cluster].verdict


def test_a_release_keeps_features_and_predictions_in_bigquery(
    dataset: str, tmp_path: Path, git_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The local engine's pipeline tasks (kfp's runner, separate processes) write and read
    BigQuery through the `storage` parameter compiled into the version's pipelines."""
    cfg = load_config(
        "local",
        [
            f"env.artifact_root={tmp_path / 'artifacts'}",
            *SMALL,
            "feature_store=bigquery",
            "predictions=bigquery",
            f"env.bigquery.features_dataset={dataset}",
            f"env.bigquery.predictions_dataset={dataset}",
            "feature_store.layout=version_column",
        ],
    )
    ctx = ReleaseContext.create(cfg)
    ctx.project_root = git_repo
    train_adhoc(ctx, "abc123")
    deploy_workflows(ctx, "abc123")
    assert ctx.feature_store.exists(ctx.names.feature_version)
    assert not (tmp_path / "artifacts" / "features").exists()  # nothing went to Parquet
    written = run_inference(ctx, "first-run")
    assert written.startswith(f"bigquery://local.{dataset}.predictions")
    assert ctx.predictions.runs(ctx.names.version) == ["first-run"]
    metadata = tmp_path / "artifacts" / "models" / ctx.names.version / "metadata.json"
    assert f"bigquery://local.{dataset}.train[feature_version=" in metadata.read_text()

    capsys.readouterr()
    versions.where(ctx)  # `inv versions --where`
    line = capsys.readouterr().out.splitlines()[1]
    row = line.split()
    assert row[:2] == [
        ctx.names.version,
        f"bigquery://local.{dataset}.train[feature_version={ctx.names.version}]",
    ]
    assert row[-1] == f"bigquery://local.{dataset}.predictions[model_version={ctx.names.version}]"
    assert "synthetic generator n_trips=" in line  # what the features were built from


def test_bigquery_puts_every_user_in_the_cluster_python_does(dataset: str) -> None:
    """The same user ids, as INT64 and as STRING columns (names, UUIDs), through
    `user_cluster_sql` in BigQuery and `user_cluster` in pandas: the same clusters. A table
    of user ids only is read with the cluster computed in BigQuery."""
    bq = client("local")
    bq.create_dataset(dataset, exists_ok=True)
    numbers = [0, 1, 7, 411, 65_537, -3, 2**40]
    texts = [
        "u411",
        " u411 ",
        "411",
        "alice@example.com",
        *(str(uuid.UUID(int=i)) for i in (1, 99)),
    ]
    for table, kind, ids in (("ints", "INT64", numbers), ("texts", "STRING", texts)):
        bq.query(f"CREATE TABLE {dataset}.{table} (user_id {kind})").result()
        values = ", ".join(f"({i!r})" for i in ids)
        bq.query(f"INSERT INTO {dataset}.{table} VALUES {values}").result()
        rows = bq.query(
            f"SELECT user_id, {user_cluster_sql('user_id')} AS c FROM {dataset}.{table}"
        ).result()
        in_sql = {row["user_id"]: row["c"] for row in rows}
        assert in_sql == {i: user_cluster(i) for i in ids}, table

    trips = make_trips(60, 8).drop(columns=["user_cluster"])
    trips["user_id"] = [f"rider-{i % 9}" for i in range(len(trips))]
    types = {"O": "STRING", "f": "FLOAT64", "i": "INT64"}
    columns = ", ".join(f"{c} {types[trips[c].dtype.kind]}" for c in trips.columns)
    bq.query(f"CREATE TABLE {dataset}.trips ({columns})").result()
    rows = ", ".join(
        "(" + ", ".join(repr(v) if isinstance(v, str) else str(v) for v in row) + ")"
        for row in trips.itertuples(index=False)
    )
    bq.query(f"INSERT INTO {dataset}.trips VALUES {rows}").result()
    source = BigQuerySource("local", table=f"local.{dataset}.trips")
    read, lineage = source.read_trips(["trip_id", "user_cluster", "distance_km"])
    assert "SHA256" in lineage["sql"] and "AS user_cluster" in lineage["sql"]
    expected = dict(zip(trips["trip_id"], user_cluster(trips["user_id"]), strict=True))
    assert dict(zip(read["trip_id"], read["user_cluster"], strict=True)) == expected


@pytest.mark.parametrize("layout", LAYOUTS)
def test_features_of_bigquery_trips_are_built_in_bigquery(
    dataset: str, layout: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the BigQuery source and the BigQuery feature store, shaping and features are
    SQL run by BigQuery: no trip row comes back (reading any fails the test), the counts are
    `shape`'s and the features `feature_matrix`'s, on the same trips."""
    trips = make_trips(400, 4).drop(columns=["user_cluster"])
    trips["user_id"] = "rider-" + trips["user_id"].astype(str)
    trips.loc[3, "distance_km"] = -2.0
    trips.loc[50, "pickup_hour"] = 31
    trips.loc[90, "user_id"] = ""
    trips.loc[120, "eta_minutes"] = np.nan
    trips.loc[200, "trip_id"] = trips.loc[7, "trip_id"]
    trips = trips.astype({"trip_id": object, "user_id": object})  # STRING columns
    raw = Dataset("local", dataset, "", 60)
    raw.ensure_dataset()
    raw.create_table("trips", trips)
    raw.load("trips", trips, "WRITE_APPEND")
    shaped, report = shape(trips, True, 0.05)
    expected = build_features(shaped, [7, 8, 9]).sort_values("trip_id", ignore_index=True)

    def pulled(*args: object, **kwargs: object) -> None:
        raise AssertionError("trip rows were pulled out of BigQuery")

    monkeypatch.setattr(BigQuerySource, "read_trips", pulled)
    monkeypatch.setattr(BigQuerySource, "_rows", pulled)
    monkeypatch.setattr(Dataset, "query_batches", pulled)
    names = ReleaseNames("taxi", "1.0.0", "1.0.0", str(tmp_path / "artifacts"))
    source = BigQuerySource("local", table=f"local.{dataset}.trips")
    store = BigQueryFeatureStore("local", dataset, layout)
    created = steps.ensure_features(names, 0, 0, [7, 8, 9], store, source, 0.05)
    assert created == f"created: {report.summary()}"  # 394 of 400 rows kept, 6 dropped
    lineage = read_lineage(names.artifact_root, "1.0.0")
    assert lineage["built"] == "in BigQuery" and lineage["rows_invalid"] == report.invalid
    monkeypatch.undo()

    built = store.read("1.0.0").sort_values("trip_id", ignore_index=True)
    assert list(built.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(built, expected, check_dtype=False, rtol=1e-12)
    # Refused data writes nothing: the same trips, no invalid row allowed.
    with pytest.raises(DataError, match=r"^6 of 400 rows of bigquery .* are invalid"):
        steps.ensure_features(
            ReleaseNames("taxi", "2.0.0", "2.0.0", names.artifact_root), 0, 0, [7, 8, 9],
            store, source, 0.0,
        )  # fmt: skip
    assert not store.exists("2.0.0")


def test_lineage_names_the_bigquery_table_read_its_snapshot_and_its_sql(
    dataset: str, tmp_path: Path
) -> None:
    """A training read from a BigQuery table, with `lineage=file`: the feature step's input
    is the table as OpenLineage names BigQuery tables, versioned by the snapshot it was read
    at (the one its lineage record keeps), and the job carries the SQL that read it."""
    trips = make_trips(300, 5).astype({"trip_id": object})
    raw = Dataset("local", dataset, "", 60)
    raw.ensure_dataset()
    raw.create_table("rides", trips)
    raw.load("rides", trips, "WRITE_APPEND")
    events_file = tmp_path / "lineage.jsonl"
    cfg = load_config(
        "local",
        [
            f"env.artifact_root={tmp_path / 'artifacts'}",
            *SMALL,
            "data_source=bigquery",
            f"data_source.table=local.{dataset}.rides",
            "lineage=file",
            f"lineage.path={events_file}",
        ],
    )
    ctx = ReleaseContext.create(cfg)
    train_adhoc(ctx, "abc123")
    record = read_lineage(ctx.names.artifact_root, ctx.names.feature_version)
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    (built,) = [
        e
        for e in events
        if e["job"]["name"].endswith(".build_features") and e["eventType"] == "COMPLETE"
    ]
    (table,) = built["inputs"]
    assert (table["namespace"], table["name"]) == ("bigquery", f"local.{dataset}.rides")
    assert table["facets"]["version"]["datasetVersion"] == record["snapshot"]
    assert table["inputFacets"]["dataQualityMetrics"]["rowCount"] == 300
    sql = built["job"]["facets"]["sql"]
    assert sql["query"] == record["sql"] and "FOR SYSTEM_TIME AS OF" in sql["query"]
