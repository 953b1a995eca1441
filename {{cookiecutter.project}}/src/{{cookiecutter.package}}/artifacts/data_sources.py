"""Where trips come from: the data source, chosen in config (`conf/data_source/*.yaml`).

Like the feature store, the source is a Hydra `_target_` that reaches every pipeline task
as JSON (`open_data_source(spec, artifact_root)`):

- `SyntheticSource` (default, offline): the deterministic generator of `ml.data`;
- `files_source.FileSource`: Parquet or CSV files under a path or glob, local or `gs://`
  (read through the artifact store's GCS client), only the declared columns;
- `bigquery_source.BigQuerySource`: a table or a SQL query, read at a pinned snapshot.

A source yields three things: the training trips (with what was read: the lineage a
feature version records), the trips of an inference batch, and outcomes - the actual
durations of trips predicted earlier, by `trip_id`, for a time window. Outcomes are read
from the source whenever they are needed, never copied into a version.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from {{ cookiecutter.package }}.artifacts.intervals import Interval
from {{ cookiecutter.package }}.artifacts.names import (
    OUTCOMES_COLUMNS,
    lineage_key,
    synthetic_outcomes_key,
    synthetic_outcomes_prefix,
)
from {{ cookiecutter.package }}.artifacts.store import (
    AlreadyExistsError,
    open_store,
    read_record,
)
from {{ cookiecutter.package }}.errors import UserError, shown
from {{ cookiecutter.package }}.targets import instantiate

if TYPE_CHECKING:
    import pandas as pd

SYNTHETIC = "{{ cookiecutter.package }}.artifacts.data_sources.SyntheticSource"
OBSERVED_AT = "observed_at"


class DataSourceError(UserError, ValueError):
    """A source that cannot be read as configured."""


class DataSource(Protocol):
    def check(self) -> None:
        """Refuse (DataSourceError) when the source cannot be read as configured: what a
        release's preflight asks before anything is created."""
        ...

    def identity(self) -> dict[str, Any]:
        """What the configuration says to read (kind, location or query, window): equal
        identities read the same data, up to its snapshot."""
        ...

    def read_trips(self, columns: list[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
        """The raw training trips (`columns` only, where the source can choose) and their
        lineage: the identity plus what was read (files and hashes, snapshot, rows)."""
        ...

    def inference_batch(
        self,
        n_trips: int,
        seed: int,
        columns: list[str],
        interval: Interval,
        keep: Keep | None = None,
    ) -> tuple[pd.DataFrame, dict[str, Any]]:
        """The trips one batch-inference run predicts, those of its data interval (and, with
        `keep`, only the rows it keeps: a shard's, applied as the rows are read), and what
        was read (files and hashes, or the query): an empty frame when the interval has no
        trips, an error when it must (`require_batch`)."""
        ...

    def outcomes(self, since: datetime, until: datetime) -> pd.DataFrame:
        """Actual durations observed in [since, until): trip_id, eta_minutes, observed_at."""
        ...


# Which rows of a batch a run keeps (a shard's: `pipelines.inference_steps.shard_keep`).
Keep = Callable[["pd.DataFrame"], Any]


@dataclass
class TripScan:
    """A source's training trips as a stream of batches: `batches()` reads them (again, on
    each call), `ids()` only their `trip_id`s; `lineage` is complete once `batches()` has
    been read to its end."""

    batches: Callable[[], Iterator[pd.DataFrame]]
    ids: Callable[[], Iterator[pd.Series]]
    lineage: dict[str, Any]


def scan_trips(source: DataSource, columns: list[str], batch_rows: int) -> TripScan:
    """The source's own stream (`scan_trips` of files), or its one frame cut in batches."""
    scan = getattr(source, "scan_trips", None)
    if scan is not None:
        found: TripScan = scan(columns, batch_rows)
        return found
    frame, lineage = source.read_trips(columns)

    def batches() -> Iterator[pd.DataFrame]:
        for start in range(0, len(frame), batch_rows):
            yield frame.iloc[start : start + batch_rows]

    def ids() -> Iterator[pd.Series]:
        if "trip_id" in frame:
            yield frame["trip_id"]

    return TripScan(batches, ids, lineage)


def inference_batches(
    source: DataSource,
    n_trips: int,
    seed: int,
    columns: list[str],
    interval: Interval,
    keep: Keep | None,
    batch_rows: int,
) -> tuple[Iterator[pd.DataFrame], dict[str, Any]]:
    """The run's trips a batch at a time: the source's own stream (files), or its one frame.
    What was read is complete once the batches have been read."""
    stream = getattr(source, "inference_batches", None)
    if stream is not None:
        found: tuple[Iterator[pd.DataFrame], dict[str, Any]] = stream(
            n_trips, seed, columns, interval, keep, batch_rows
        )
        return found
    frame, read = source.inference_batch(n_trips, seed, columns, interval, keep)
    return iter([frame] if len(frame) else []), read


def frame_sha256(frame: pd.DataFrame) -> str:
    """A content hash of a frame's values (row order included)."""
    import pandas as pd

    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()


def in_window(
    frame: pd.DataFrame, column: str, since: datetime | None, until: datetime | None
) -> pd.DataFrame:
    """The rows whose `column` falls in [since, until); an open bound keeps every row."""
    import pandas as pd

    stamps = pd.to_datetime(frame[column], utc=True)
    keep = pd.Series(True, index=frame.index)
    if since is not None:
        keep &= stamps >= pd.Timestamp(since)
    if until is not None:
        keep &= stamps < pd.Timestamp(until)
    return frame[keep]


def when(text: str) -> datetime:
    """An ISO date or time from config; one without a zone is UTC."""
    moment = datetime.fromisoformat(str(text))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class SyntheticSource:
    """The generator: the same (n_trips, seed) always gives the same trips. Each inference
    batch's true durations become outcomes once the batch is predicted
    (`outcomes/synthetic/`)."""

    def __init__(self, artifact_root: str, n_trips: int, seed: int) -> None:
        self.artifact_root, self.n_trips, self.seed = artifact_root, int(n_trips), int(seed)

    def check(self) -> None:
        if self.n_trips <= 0:
            raise DataSourceError(f"data.n_trips must be positive, got {self.n_trips}")

    def identity(self) -> dict[str, Any]:
        return {
            "source": "synthetic",
            "location": f"generator n_trips={self.n_trips} seed={self.seed}",
            "window": None,
        }

    def read_trips(self, columns: list[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
        from {{ cookiecutter.package }}.ml.data import make_trips

        trips = make_trips(self.n_trips, self.seed)
        return trips, {**self.identity(), "rows": len(trips), "content_sha256": frame_sha256(trips)}

    def inference_batch(
        self,
        n_trips: int,
        seed: int,
        columns: list[str],
        interval: Interval,
        keep: Keep | None = None,
    ) -> tuple[pd.DataFrame, dict[str, Any]]:
        """The batch with its true durations: they travel with it, unseen by the model
        (it reads only the feature columns), and become outcomes once it is predicted
        (`record_outcomes`). Generated trips have no time: every interval has a batch."""
        from {{ cookiecutter.package }}.ml.data import make_trips

        trips = make_trips(n_trips, seed)
        read = {"source": "synthetic", "location": f"generator seed={seed}", "rows": len(trips)}
        trips = trips[keep(trips)].reset_index(drop=True) if keep is not None else trips
        return trips, {**read, "kept": len(trips)}

    def outcomes(self, since: datetime, until: datetime) -> pd.DataFrame:
        import pandas as pd

        store = open_store(self.artifact_root)
        frames = [
            pd.read_parquet(io.BytesIO(store.read(key)))
            for key in store.list(synthetic_outcomes_prefix())
        ]
        if not frames:
            return pd.DataFrame(columns=list(OUTCOMES_COLUMNS))
        return in_window(pd.concat(frames, ignore_index=True), OBSERVED_AT, since, until)


def record_outcomes(artifact_root: str, observed: pd.DataFrame) -> str:
    """Keep the true durations of a predicted synthetic batch (trip_id, eta_minutes) as its
    outcomes, observed now; returns the key. Written after the batch's predictions, so a
    run that fails before them leaves nothing."""
    frame = observed[["trip_id", "eta_minutes"]].assign(**{OBSERVED_AT: datetime.now(UTC)})
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    key = synthetic_outcomes_key(frame_sha256(frame[["trip_id"]]))
    with suppress(AlreadyExistsError):  # the same trips again: their outcomes are there
        open_store(artifact_root).write(key, buffer.getvalue())
    return key


def open_data_source(spec: dict | None, artifact_root: str, **defaults: Any) -> DataSource:
    """The configured source; the synthetic generator (with `defaults`) when none is."""
    source: DataSource = instantiate(
        spec or {"_target_": SYNTHETIC, **defaults}, SYNTHETIC, artifact_root=artifact_root
    )
    return source


def read_outcomes(source: DataSource, since: datetime, until: datetime) -> pd.DataFrame:
    """Outcomes observed in [since, until), one row per trip (the latest observation)."""
    frame = source.outcomes(since, until)
    if frame.empty:
        return frame
    return frame.sort_values(OBSERVED_AT).drop_duplicates("trip_id", keep="last")


def write_lineage(artifact_root: str, feature_version: str, lineage: dict[str, Any]) -> None:
    """Record what a feature version was built from (create-only, beside its features)."""
    with suppress(AlreadyExistsError):  # a rerun after a kill: the first build recorded it
        open_store(artifact_root).write_text(
            lineage_key(feature_version), json.dumps(lineage, indent=2, default=str)
        )


def read_lineage(artifact_root: str, feature_version: str) -> dict[str, Any] | None:
    """What a feature version was built from; None when it records nothing (older)."""
    return read_record(open_store(artifact_root), lineage_key(feature_version), "a lineage record")


def describe(identity: dict[str, Any] | None) -> str:
    """`files data/trips/*.parquet` (+ window): a source as one line names it."""
    if not identity:
        return "unknown"
    text = f"{identity.get('source')} {identity.get('location')}"
    if identity.get("query"):
        text += f" ({shown(identity['query'], 60)})"
    if identity.get("window"):
        window = identity["window"]
        text += f" [{window.get('column')} {window.get('start')}..{window.get('end')}]"
    return text


def same_source(lineage: dict[str, Any], source: DataSource) -> bool:
    """Whether `source` reads what `lineage` was built from (its snapshot aside)."""
    identity = source.identity()
    return all(lineage.get(key) == value for key, value in identity.items())
