"""Where batch predictions go: one sink per environment, each row tagged with its version.

`open_predictions(cfg.predictions, artifact_root)`, chosen like the feature store
(`conf/predictions/*.yaml`, a `_target_`):

- `ParquetPredictions` (the default, offline): one create-only object per run,
  `predictions/{version}/{run_id}.parquet`;
- `artifacts.bigquery_predictions.BigQueryPredictions`: one table for every version, each
  run appending its rows with `model_version` and `run_id`, so an A/B split is a `GROUP BY`.

Every live version predicts every trip of a batch (`traffic.shadow`); the `served` column
is true for the rows of the version that serves the trip's user cluster, false for shadow
rows. What users were given is the served rows: `read(version)` returns only those unless
asked for all; shadow rows are what `inv ab` compares versions on.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from {{ cookiecutter.package }}.artifacts.names import predictions_key, predictions_prefix, run_of
from {{ cookiecutter.package }}.artifacts.store import Held, open_store
from {{ cookiecutter.package }}.targets import instantiate

if TYPE_CHECKING:
    import pandas as pd

PARQUET = "{{ cookiecutter.package }}.artifacts.predictions.ParquetPredictions"
SERVED = "served"
# What `read` returns: enough to join outcomes (trip_id) and split by cluster.
READ_COLUMNS = ("trip_id", "user_cluster", "eta_minutes", "model_version", SERVED)
# How long after its prediction a trip's outcome may still be observed.
OUTCOME_LAG = timedelta(days=1)
RUN_TIME = re.compile(r"^(?:online-)?(\d{8}T\d{6})")


class PredictionSink(Protocol):
    def location(self, version: str) -> str:
        """Where `version`'s predictions are, for people to read."""
        ...

    def write(self, version: str, run_id: str, frame: pd.DataFrame) -> str:
        """Store one run's predictions (create-only per run); returns where they went."""
        ...

    def runs(self, version: str) -> list[str]:
        """The run ids with predictions of `version`, oldest first (a run's shards are one
        run)."""
        ...

    def read(
        self, version: str, shadow: bool = False, since: datetime | None = None
    ) -> pd.DataFrame:
        """`version`'s predictions (READ_COLUMNS), oldest run first: the served rows, and
        with `shadow` the shadow rows too; with `since`, only runs made after
        `since - OUTCOME_LAG` (a trip's outcome comes after its prediction, so older runs
        cannot pair with outcomes observed since then)."""
        ...

    def holdings(self, version: str, before: datetime) -> list[Held]:
        """The objects or rows of `version`'s runs made before `before` (retention)."""
        ...

    def remove(self, version: str, held: Held) -> None:
        """Remove one of `holdings` (retention only); a no-op when it is gone already."""
        ...


def made_before(run_id: str, moment: datetime) -> bool:
    """Whether a run whose id starts with its time (`new_run_id`, `online-...`) was made
    before `moment`; a run named otherwise is never said to be."""
    found = RUN_TIME.search(run_id)
    if not found:
        return False
    return datetime.strptime(found[1], "%Y%m%dT%H%M%S").replace(tzinfo=UTC) < moment


def only_served(frame: pd.DataFrame, shadow: bool) -> pd.DataFrame:
    """Rows written before the `served` column existed were all served."""
    if SERVED not in frame:
        frame = frame.assign(**{SERVED: True})
    frame = frame.astype({SERVED: bool})
    return frame if shadow else frame[frame[SERVED]]


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
        names = [
            key.rsplit("/", 1)[-1].removesuffix(".parquet")
            for key in self.store.list(predictions_prefix(version))
        ]
        return list(dict.fromkeys(run_of(name) for name in names))  # a run's shards: one

    def holdings(self, version: str, before: datetime) -> list[Held]:
        keys = self.store.list(predictions_prefix(version))
        old = [k for k in keys if made_before(k.rsplit("/", 1)[-1], before)]
        return [self.store.held(key) for key in old]

    def remove(self, version: str, held: Held) -> None:
        self.store.delete(held.key)

    def read(
        self, version: str, shadow: bool = False, since: datetime | None = None
    ) -> pd.DataFrame:
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables = []
        for key in self.store.list(predictions_prefix(version)):
            run_id = key.rsplit("/", 1)[-1].removesuffix(".parquet")
            if since is not None and made_before(run_id, since - OUTCOME_LAG):
                continue
            table = pq.read_table(pa.BufferReader(self.store.read(key)))
            if SERVED not in table.column_names:
                table = table.append_column(SERVED, pa.array([True] * table.num_rows))
            tables.append(table.select([c for c in READ_COLUMNS if c in table.column_names]))
        if not tables:
            return pd.DataFrame(columns=list(READ_COLUMNS))
        return only_served(pa.concat_tables(tables, promote_options="default").to_pandas(), shadow)


def open_predictions(spec: Mapping[str, Any] | None, artifact_root: str) -> PredictionSink:
    sink: PredictionSink = instantiate(spec, PARQUET, artifact_root=artifact_root)
    return sink
