"""The feature step in bounded memory: trips in batches, features in parts.

A feature version is built from a stream of the source's trips (`scan_trips`: files by row
group or chunk, other sources' one frame cut in batches), `data.batch_rows` at a time:

1. `trip_id`s first, out of core (`ml.uniqueness`): a trip id found twice anywhere, in two
   files or two batches, is a duplicate as it would be in one frame;
2. then each batch is shaped by the declared schema (its invalid rows counted by column and
   reason) and turned into features, spooled to a local temporary folder as a part;
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

from {{ cookiecutter.package }}.artifacts.data_sources import DataSource, describe, scan_trips
from {{ cookiecutter.package }}.artifacts.feature_store import FeatureStore
from {{ cookiecutter.package }}.ml import TARGET
from {{ cookiecutter.package }}.ml.schema import (
    OPTIONAL_COLUMNS,
    TRIP_COLUMNS,
    ShapeReport,
    check_share,
    shape_rows,
)
from {{ cookiecutter.package }}.ml.uniqueness import duplicate_ids
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
    import pandas as pd

    from {{ cookiecutter.package }}.ml.features import build_features

    where = describe(source.identity())
    scan = scan_trips(source, [*TRIP_COLUMNS, *OPTIONAL_COLUMNS, TARGET], batch_rows)
    duplicates = duplicate_ids(scan.ids)
    report = ShapeReport(rows_in=0)
    progress = Throughput(f"features {feature_version}")
    with tempfile.TemporaryDirectory(prefix="feature-parts-") as spool:
        parts: list[Path] = []
        for batch in scan.batches():
            shaped, counted = shape_rows(batch, True, where, duplicates)
            report.add(counted)
            if len(shaped):
                parts.append(Path(spool) / f"{len(parts):05d}.parquet")
                build_features(shaped, rush_hours).to_parquet(parts[-1], index=False)
            progress.count(len(batch), parts=1 if len(shaped) else 0)
        progress.done()
        if report.invalid:
            print(f"shaping {where}: {report.summary()}")
        check_share(report, invalid_share, where)  # refused: the store is untouched
        writer = features.writer(feature_version)
        for part in parts:
            writer.write(pd.read_parquet(part))
        writer.commit()
    lineage = {**scan.lineage, "rows_valid": report.rows_out, "rows_invalid": report.invalid}
    return report, lineage
