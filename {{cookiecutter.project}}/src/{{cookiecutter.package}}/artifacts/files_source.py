"""Trips from Parquet or CSV files: a path or a glob, local or `gs://bucket/...`."""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import io
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from {{ cookiecutter.package }}.artifacts.data_sources import (
    OBSERVED_AT,
    DataSourceError,
    Keep,
    TripScan,
    in_window,
    when,
)
from {{ cookiecutter.package }}.artifacts.intervals import Interval, check_template, render_periods
from {{ cookiecutter.package }}.artifacts.names import OUTCOMES_COLUMNS
from {{ cookiecutter.package }}.artifacts.store import ArtifactStore, StoreError, open_store
from {{ cookiecutter.package }}.errors import PATH_CHARS, shown

if TYPE_CHECKING:
    import pandas as pd


# Rows a batch holds when a caller does not say (`data.batch_rows` in the pipelines).
BATCH_ROWS = 500_000


class FileSource:
    """Parquet or CSV files: a path or a glob, local or `gs://bucket/...`.

    `path`: the training trips; `outcomes_path`: actual durations (trip_id, eta_minutes,
    observed_at). `window` (`{column, start, end}`) keeps the training rows whose `column`
    falls in [start, end).

    `batch_path`: the trips each inference run predicts, usually a template on the run's
    data interval (`exports/trips/dt={start:%Y-%m-%d}/*.parquet`, see
    `artifacts.intervals`); `batch_column` keeps only the batch rows whose time falls in
    the interval. No file for an interval is an empty period (nothing predicted), or an
    error with `require_batch`.

    Parquet is read column by column (only the declared ones); CSV as a stream of the
    declared columns. Every file read is recorded with its sha256.
    """

    def __init__(
        self,
        artifact_root: str,
        path: str,
        batch_path: str | None = None,
        outcomes_path: str | None = None,
        window: dict | None = None,
        batch_column: str | None = None,
        require_batch: bool = False,
        timeout_s: float = 60,
    ) -> None:
        if not path:
            raise DataSourceError("data_source.path is empty: set it to your trips' files")
        self.path, self.batch_path, self.outcomes_path = path, batch_path, outcomes_path
        self.window = dict(window) if window and window.get("column") else None
        self.batch_column, self.require_batch = batch_column or None, bool(require_batch)
        self.timeout_s = timeout_s

    def check(self) -> None:
        try:
            found = self._files(self.path)
        except StoreError as error:
            raise DataSourceError(f"cannot list {shown(self.path)}: {error}") from None
        if not found:
            raise DataSourceError(f"no trips file matches data_source.path {shown(self.path)}")
        if self.batch_path:
            check_template(self.batch_path, "data_source.batch_path")

    def identity(self) -> dict[str, Any]:
        return {"source": "files", "location": self.path, "window": self.window}

    def _bucket(self, uri: str) -> tuple[ArtifactStore, str]:
        """`gs://bucket/key` as the store of its bucket and the key (or pattern) in it."""
        bucket, _, key = uri[len("gs://") :].partition("/")
        return open_store(f"gs://{bucket}", timeout_s=self.timeout_s), key

    def _files(self, pattern: str) -> list[str]:
        """The files the pattern names, sorted: absolute paths, or gs:// URIs."""
        if pattern.startswith("gs://"):
            store, inside = self._bucket(pattern)
            prefix = inside.split("*", 1)[0].split("?", 1)[0].rpartition("/")[0]
            keys = [k for k in store.list(prefix) if fnmatch.fnmatchcase(k, inside)]
            return [store.uri(k) for k in sorted(keys)]
        paths = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        return [str(Path(p).resolve()) for p in paths if Path(p).is_file()]

    def _open(self, uri: str) -> Any:
        """What pandas and pyarrow read: the path itself, or a gs:// object's bytes."""
        if not uri.startswith("gs://"):
            return uri
        store, key = self._bucket(uri)
        return io.BytesIO(store.read(key))

    def scan_trips(self, columns: list[str], batch_rows: int) -> TripScan:
        """The training trips a batch of `batch_rows` at a time, file after file (Parquet
        by row groups through pyarrow, CSV in chunks through pandas): each file's sha256 and
        rows go to the lineage as it is read, the window applies to each batch."""
        window = str(self.window["column"]) if self.window else None
        uris = self._files(self.path)
        if not uris:
            raise DataSourceError(f"no trips file matches {shown(self.path)}")
        lineage: dict[str, Any] = {**self.identity(), "files": [], "rows": 0}

        def windowed(batch: pd.DataFrame) -> pd.DataFrame:
            if window is None:
                return batch
            if window not in batch:
                raise DataSourceError(f"window column {shown(window)} is missing from the trips")
            start, end = self.window.get("start"), self.window.get("end")  # type: ignore[union-attr]
            bounds = (when(start) if start else None, when(end) if end else None)
            return in_window(batch, window, *bounds).drop(columns=[window])

        def batches(wanted: list[str], record: bool) -> Iterator[pd.DataFrame]:
            if record:
                lineage.update(files=[], rows=0)
            for uri in uris:
                readable = self._open(uri)
                digest = _sha256(readable) if record else ""
                rows = 0
                for held, batch in _read_batches(uri, readable, wanted, batch_rows):
                    rows += held
                    kept = windowed(batch)
                    if record:
                        lineage["rows"] += len(kept)
                    yield kept
                if record:
                    lineage["files"].append({"path": uri, "sha256": digest, "rows": rows})
            if record:
                lineage["content_sha256"] = hashlib.sha256(
                    "".join(f["sha256"] for f in lineage["files"]).encode()
                ).hexdigest()

        extra = [window] if window else []
        return TripScan(
            lambda: batches([*columns, *extra], record=True),
            lambda: (b["trip_id"] for b in batches(["trip_id", *extra], False) if "trip_id" in b),
            lineage,
        )

    def read_trips(self, columns: list[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
        import pandas as pd

        scan = self.scan_trips(columns, BATCH_ROWS)
        trips = pd.concat(list(scan.batches()), ignore_index=True)
        return trips, scan.lineage

    def inference_batch(
        self,
        n_trips: int,
        seed: int,
        columns: list[str],
        interval: Interval,
        keep: Keep | None = None,
    ) -> tuple[pd.DataFrame, dict[str, Any]]:
        import pandas as pd

        batches, read = self.inference_batches(n_trips, seed, columns, interval, keep)
        kept = list(batches)
        trips = pd.concat(kept, ignore_index=True) if kept else pd.DataFrame(columns=columns)
        return trips, read

    def inference_batches(
        self,
        n_trips: int,
        seed: int,
        columns: list[str],
        interval: Interval,
        keep: Keep | None = None,
        batch_rows: int = BATCH_ROWS,
    ) -> tuple[Iterator[pd.DataFrame], dict[str, Any]]:
        """The trips of the interval `batch_rows` at a time, each batch only the rows `keep`
        keeps (a shard's); what was read fills the returned dict as the batches go by."""
        if not self.batch_path:
            raise DataSourceError(
                "data_source.batch_path is not set: name the files of the trips to predict, "
                "e.g. exports/trips/dt={start:%Y-%m-%d}/*.parquet (README: Use your own data)"
            )
        # Every period's partition of the interval (a backfill of five days reads five),
        # each required on its own when `require_batch` is set: a missing day is named.
        patterns = render_periods(self.batch_path, interval, "data_source.batch_path")
        read: dict[str, Any] = {"source": "files", "location": patterns[0], "files": [], "rows": 0}
        if len(patterns) > 1:
            read["locations"] = patterns
        read["kept"] = 0
        uris: list[str] = []
        for pattern in patterns:
            found = self._files(pattern)
            if not found and self.require_batch:
                raise DataSourceError(
                    f"no batch file matches {shown(pattern, PATH_CHARS)} for {interval} "
                    "(data_source.require_batch is set)"
                )
            uris += [uri for uri in found if uri not in uris]
        wanted = [*columns, *([self.batch_column] if self.batch_column else [])]

        def batches() -> Iterator[pd.DataFrame]:
            # Without a time column every row is the interval's: a shard's rows are kept as
            # the file is read. With one, the interval comes first, then the shard.
            early = keep if not self.batch_column else None
            for uri in uris:
                readable = self._open(uri)
                digest, rows = _sha256(readable), 0
                for held, batch in _read_batches(uri, readable, wanted, batch_rows, early):
                    rows += held
                    if early is not None:
                        read["rows"] += held
                        read["kept"] += len(batch)
                        yield batch
                        continue
                    if self.batch_column:
                        if self.batch_column not in batch:
                            raise DataSourceError(
                                f"data_source.batch_column {shown(self.batch_column)} is "
                                f"missing from {uri}"
                            )
                        batch = batch[interval.contains(batch[self.batch_column])].drop(
                            columns=[self.batch_column]
                        )
                    read["rows"] += len(batch)
                    if keep is not None and len(batch):
                        batch = batch[keep(batch)]
                    read["kept"] += len(batch)
                    yield batch.reset_index(drop=True)
                read["files"].append({"path": uri, "sha256": digest, "rows": rows})

        return batches(), read

    def outcomes(self, since: datetime, until: datetime) -> pd.DataFrame:
        import pandas as pd

        if not self.outcomes_path:
            raise DataSourceError("data_source.outcomes_path is not set: name the outcomes' files")
        uris = self._files(self.outcomes_path)
        if not uris:
            raise DataSourceError(f"no outcomes file matches {shown(self.outcomes_path)}")
        columns = list(OUTCOMES_COLUMNS)
        frames = [
            batch
            for uri in uris
            for _, batch in _read_batches(uri, self._open(uri), columns, BATCH_ROWS)
        ]
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
        return in_window(frame, OBSERVED_AT, since, until)


def _sha256(readable: Any) -> str:
    digest = hashlib.sha256()
    if isinstance(readable, io.BytesIO):
        digest.update(readable.getbuffer())
        return digest.hexdigest()
    with open(readable, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_batches(
    uri: str, readable: Any, columns: list[str], batch_rows: int, keep: Keep | None = None
) -> Iterator[tuple[int, pd.DataFrame]]:
    """The declared columns a file has (the schema names what is missing), `batch_rows` at
    a time, with the rows each batch held: Parquet through pyarrow's batches, CSV through
    pandas' chunks (each chunk's types are inferred from its own rows; the schema coerces
    them to the declared ones). With `keep`, a Parquet batch is filtered before it becomes a
    frame (a shard converts only its own rows)."""
    import pandas as pd

    if isinstance(readable, io.BytesIO):
        readable.seek(0)
    try:
        if uri.lower().endswith((".csv", ".csv.gz")):
            with pd.read_csv(
                readable, usecols=lambda column: column in columns, chunksize=batch_rows
            ) as chunks:
                for chunk in chunks:
                    if keep is not None and "trip_id" in chunk:
                        yield len(chunk), chunk[keep(chunk)].reset_index(drop=True)
                    else:
                        yield len(chunk), chunk
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(readable)
        present = [c for c in columns if c in parquet.schema_arrow.names]
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=present):
            rows = batch.num_rows
            if keep is not None and "trip_id" in batch.schema.names:
                ids = pd.DataFrame({"trip_id": batch.column("trip_id").to_pandas()})
                batch = batch.filter(pa.array(keep(ids), type=pa.bool_()))
            yield rows, batch.to_pandas()
    except (OSError, ValueError) as error:
        raise DataSourceError(f"cannot read {uri}: {shown(str(error), 120)}") from None
