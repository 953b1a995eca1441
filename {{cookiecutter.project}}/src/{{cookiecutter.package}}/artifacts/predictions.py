"""Where batch predictions go: one sink per environment, each row tagged with its version.

`open_predictions(cfg.predictions, artifact_root)`, chosen like the feature store
(`conf/predictions/*.yaml`, a `_target_`):

- `ParquetPredictions` (the default, offline): one create-only object per run,
  `predictions/{version}/{run_id}.parquet`;
- `artifacts.bigquery.BigQueryPredictions`: one table for every version, each run appending
  its rows with `model_version` and `run_id`, so an A/B split is a `GROUP BY`.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from {{ cookiecutter.package }}.artifacts.features import instantiate
from {{ cookiecutter.package }}.artifacts.names import predictions_key, predictions_prefix
from {{ cookiecutter.package }}.artifacts.store import open_store

if TYPE_CHECKING:
    import pandas as pd

PARQUET = "{{ cookiecutter.package }}.artifacts.predictions.ParquetPredictions"


class PredictionSink(Protocol):
    def location(self, version: str) -> str:
        """Where `version`'s predictions are, for people to read."""
        ...

    def write(self, version: str, run_id: str, frame: pd.DataFrame) -> str:
        """Store one run's predictions (create-only per run); returns where they went."""
        ...

    def runs(self, version: str) -> list[str]:
        """The run ids with predictions of `version`, oldest first."""
        ...


class ParquetPredictions:
    def __init__(self, artifact_root: str) -> None:
        self.store = open_store(artifact_root)

    def location(self, version: str) -> str:
        return f"{self.store.root.rstrip('/')}/{predictions_prefix(version)}"

    def write(self, version: str, run_id: str, frame: pd.DataFrame) -> str:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        key = predictions_key(version, run_id)
        self.store.write(key, buffer.getvalue())
        return f"{self.store.root.rstrip('/')}/{key}"

    def runs(self, version: str) -> list[str]:
        return [
            key.rsplit("/", 1)[-1].removesuffix(".parquet")
            for key in self.store.list(predictions_prefix(version))
        ]


def open_predictions(spec: Mapping[str, Any] | None, artifact_root: str) -> PredictionSink:
    sink: PredictionSink = instantiate(spec, PARQUET, artifact_root=artifact_root)
    return sink
