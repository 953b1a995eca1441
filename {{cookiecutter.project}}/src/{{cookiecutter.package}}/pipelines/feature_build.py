"""The feature step in bounded memory: trips in batches, features in parts.

A feature version is built from a stream of the source's trips (`scan_trips`: files by row
group or chunk, other sources' one frame cut in batches), `data.batch_rows` at a time:

1. each batch is shaped by the declared schema (its invalid rows counted by column and
   reason) and turned into features, spooled to a local temporary folder as a part, and
   its `trip_id`s' hashes are spilled to disk (`ml.uniqueness`);
2. a trip id found twice anywhere, in two files or two batches, is a duplicate as it would
   be in one frame: when one is found (rarely), the batches are shaped again knowing it;
3. `data.max_invalid_share` applies to the sum of the batches' counts: refused, the store is
   untouched; accepted, the parts go to the feature store one by one, then its commit point.

Memory is one batch and its features, whatever the data's size (local disk holds the spooled
parts); the result is the one-frame result, row for row (the tests hold the two equal).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from {{ cookiecutter.package }}.artifacts.data_sources import (
    DataSource,
    TripScan,
    describe,
    scan_trips,
)
from {{ cookiecutter.package }}.artifacts.feature_store import FeatureStore
from {{ cookiecutter.package }}.ml import TARGET
from {{ cookiecutter.package }}.ml.schema import (
    OPTIONAL_COLUMNS,
    TRIP_COLUMNS,
    ShapeReport,
    check_share,
    shape_rows,
)
from {{ cookiecutter.package }}.ml.uniqueness import IdSpill, confirmed
from {{ cookiecutter.package }}.progress import Throughput


def build_feature_version(
    feature_version: str,
    source: DataSource,
    features: FeatureStore,
    rush_hours: Sequence[int],
    invalid_share: float,
    batch_rows: int,
) -> tuple[ShapeReport, dict[str, Any]]:
    """Write `feature_version` from the source's trips; returns the shaping's report and
    the lineage (what was read, with the counts). AlreadyExistsError when another run
    completed the version first."""
    where = describe(source.identity())
    scan = scan_trips(source, [*TRIP_COLUMNS, *OPTIONAL_COLUMNS, TARGET], batch_rows)
    label = f"features {feature_version}"
    with tempfile.TemporaryDirectory(prefix="feature-parts-") as scratch:
        spool = Path(scratch)
        with IdSpill() as spill:
            report, parts = _spool(scan, where, rush_hours, spool, set(), spill, label)
            candidates = spill.repeated()
        duplicates = confirmed(candidates, scan.ids())
        if duplicates:  # shaped again, now knowing them: every row of each is dropped
            report, parts = _spool(scan, where, rush_hours, spool, duplicates, None, label)
        if report.invalid:
            print(f"shaping {where}: {report.summary()}")
        check_share(report, invalid_share, where)  # refused: the store is untouched
        writer = features.writer(feature_version)
        for part in parts:
            writer.write_file(part)
        writer.commit()
    lineage = {**scan.lineage, "rows_valid": report.rows_out, "rows_invalid": report.invalid}
    return report, lineage


def _spool(
    scan: TripScan,
    where: str,
    rush_hours: Sequence[int],
    spool: Path,
    duplicates: set[str],
    spill: IdSpill | None,
    label: str,
) -> tuple[ShapeReport, list[Path]]:
    """Shape each batch and spool its features as Parquet (the bytes the Parquet feature
    store keeps: encoded once); with `spill`, spill its ids' hashes too."""
    from {{ cookiecutter.package }}.ml.features import build_features

    report, parts = ShapeReport(rows_in=0), list[Path]()
    progress = Throughput(label)
    for batch in scan.batches():
        if spill is not None and "trip_id" in batch:
            spill.add(batch["trip_id"])
        shaped, counted = shape_rows(batch, True, where, duplicates)
        report.add(counted)
        if len(shaped):
            parts.append(spool / f"{len(parts):05d}.parquet")
            build_features(shaped, rush_hours).to_parquet(parts[-1], index=False)
        progress.count(len(batch), parts=1 if len(shaped) else 0)
    progress.done()
    return report, parts


def builds_in_bigquery(source: DataSource, features: FeatureStore) -> bool:
    """Whether both ends are BigQuery: the features are then built there, in SQL."""
    return hasattr(source, "relation") and hasattr(features, "create_from_query")


def build_in_bigquery(
    feature_version: str,
    source: Any,
    features: Any,
    rush_hours: Sequence[int],
    invalid_share: float,
) -> tuple[ShapeReport, dict[str, Any]]:
    """Shape the source's trips and build their features in BigQuery: two queries, one
    counting each reason a row fails the declared schema (`ml.schema.shaping_sql`), one
    writing the feature version from the valid rows (`ml.features.feature_sql`). No trip
    row comes back; refused data (`data.max_invalid_share`) writes nothing."""
    from {{ cookiecutter.package }}.ml.features import feature_sql
    from {{ cookiecutter.package }}.ml.schema import shaping_sql

    where = describe(source.identity())
    read = [c for c in (*TRIP_COLUMNS, *OPTIONAL_COLUMNS, TARGET) if c != "user_cluster"]
    relation = source.relation([*read, "user_cluster"])
    shaping = shaping_sql(relation.present, True, where)
    labels = list(shaping.failures)
    flags = ", ".join(f"({cond}) AS _f{n}" for n, (cond, _) in enumerate(shaping.failures.values()))
    checked = (
        f"WITH raw AS ({relation.sql}), "
        "flagged AS (SELECT *, COUNT(*) OVER (PARTITION BY trip_id) AS _copies FROM raw), "
        f"checked AS (SELECT *, {flags} FROM flagged)"
    )
    valid = " AND ".join(f"NOT IFNULL(_f{n}, FALSE)" for n in range(len(labels))) or "TRUE"
    counted = ", ".join(
        f"COUNTIF(IFNULL(_f{n}, FALSE)) AS n{n}, "
        f"MIN(IF(IFNULL(_f{n}, FALSE), CAST(`{column}` AS STRING), NULL)) AS e{n}"
        for n, (_, column) in enumerate(shaping.failures.values())
    )
    counts = source.count(
        f"{checked} SELECT COUNT(*) AS rows_in, COUNTIF({valid}) AS rows_out, {counted} "
        "FROM checked",
        relation.parameters,
    )
    report = ShapeReport(rows_in=int(counts["rows_in"]), rows_out=int(counts["rows_out"]))
    for n, label in enumerate(labels):
        if counts[f"n{n}"]:
            report.invalid[label] = int(counts[f"n{n}"])
            report.examples[label] = repr(counts[f"e{n}"])
    if report.invalid:
        print(f"shaping {where}: {report.summary()}")
    check_share(report, invalid_share, where)  # refused: nothing written
    typed = ", ".join(f"{expr} AS `{name}`" for name, expr in shaping.typed.items())
    select = (
        f"{checked}, valid AS (SELECT {typed} FROM checked WHERE {valid}) "
        f"SELECT {', '.join(feature_sql(rush_hours))}, "
        "ROW_NUMBER() OVER (ORDER BY trip_id) - 1 AS row_number FROM valid"
    )
    rows = features.create_from_query(feature_version, select, relation.parameters)
    print(f"features {feature_version}: {rows:,} rows built in BigQuery")
    lineage = {
        **relation.lineage(source.identity()),
        "rows": report.rows_in,
        "rows_valid": report.rows_out,
        "rows_invalid": report.invalid,
        "built": "in BigQuery",
    }
    return report, lineage
