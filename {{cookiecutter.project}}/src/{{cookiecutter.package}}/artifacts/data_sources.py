"""Where trips come from: the data source, chosen in config (`conf/data_source/*.yaml`).

Like the feature store, the source is a Hydra `_target_` that reaches every pipeline task
as JSON (`open_data_source(spec, artifact_root)`):

- `SyntheticSource` (default, offline): the deterministic generator of `ml.data`;
- `FileSource`: Parquet or CSV files under a path or glob, local or `gs://` (read through
  the artifact store's GCS client), only the declared columns;
- `BigQuerySource`: a table or a SQL query, read at a pinned snapshot.

A source yields three things: the training trips (with what was read: the lineage a
feature version records), the trips of an inference batch, and outcomes - the actual
durations of trips predicted earlier, by `trip_id`, for a time window. Outcomes are read
from the source whenever they are needed, never copied into a version.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import io
import json
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from {{ cookiecutter.package }}.artifacts.features import instantiate
from {{ cookiecutter.package }}.artifacts.names import (
    OUTCOMES_COLUMNS,
    lineage_key,
    synthetic_outcomes_key,
    synthetic_outcomes_prefix,
)
from {{ cookiecutter.package }}.artifacts.store import AlreadyExistsError, StoreError, open_store
from {{ cookiecutter.package }}.errors import UserError, shown

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

    def inference_batch(self, n_trips: int, seed: int, columns: list[str]) -> pd.DataFrame:
        """The trips one batch-inference run predicts."""
        ...

    def outcomes(self, since: datetime, until: datetime) -> pd.DataFrame:
        """Actual durations observed in [since, until): trip_id, eta_minutes, observed_at."""
        ...


def frame_sha256(frame: pd.DataFrame) -> str:
    """A content hash of a frame's values (row order included)."""
    import pandas as pd

    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()


def _window(frame: pd.DataFrame, column: str, since: datetime, until: datetime):
    import pandas as pd

    stamps = pd.to_datetime(frame[column], utc=True)
    return frame[(stamps >= pd.Timestamp(since)) & (stamps < pd.Timestamp(until))]


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

    def inference_batch(self, n_trips: int, seed: int, columns: list[str]) -> pd.DataFrame:
        """The batch with its true durations: they travel with it, unseen by the model
        (it reads only the feature columns), and become outcomes once it is predicted
        (`record_outcomes`)."""
        from {{ cookiecutter.package }}.ml.data import make_trips

        return make_trips(n_trips, seed)

    def outcomes(self, since: datetime, until: datetime) -> pd.DataFrame:
        import pandas as pd

        store = open_store(self.artifact_root)
        frames = [
            pd.read_parquet(io.BytesIO(store.read(key)))
            for key in store.list(synthetic_outcomes_prefix())
        ]
        if not frames:
            return pd.DataFrame(columns=list(OUTCOMES_COLUMNS))
        return _window(pd.concat(frames, ignore_index=True), OBSERVED_AT, since, until)


class FileSource:
    """Parquet or CSV files: a path or a glob, local or `gs://bucket/...`.

    `path`: the training trips; `batch_path`: the trips each inference run predicts;
    `outcomes_path`: actual durations (trip_id, eta_minutes, observed_at). `window`
    (`{column, start, end}`) keeps the training rows whose `column` falls in [start, end).
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
        timeout_s: float = 60,
    ) -> None:
        if not path:
            raise DataSourceError("data_source.path is empty: set it to your trips' files")
        self.path, self.batch_path, self.outcomes_path = path, batch_path, outcomes_path
        self.window = dict(window) if window and window.get("column") else None
        self.timeout_s = timeout_s

    def check(self) -> None:
        try:
            found = self._files(self.path)
        except StoreError as error:
            raise DataSourceError(f"cannot list {shown(self.path)}: {error}") from None
        if not found:
            raise DataSourceError(f"no trips file matches data_source.path {shown(self.path)}")

    def identity(self) -> dict[str, Any]:
        return {"source": "files", "location": self.path, "window": self.window}

    def _files(self, pattern: str) -> list[str]:
        """The files the pattern names, sorted: absolute paths, or gs:// URIs."""
        if pattern.startswith("gs://"):
            bucket, _, inside = pattern[len("gs://") :].partition("/")
            store = open_store(f"gs://{bucket}", timeout_s=self.timeout_s)
            prefix = inside.split("*", 1)[0].split("?", 1)[0].rpartition("/")[0]
            keys = [k for k in store.list(prefix) if fnmatch.fnmatchcase(k, inside)]
            return [f"gs://{bucket}/{k}" for k in sorted(keys)]
        paths = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        return [str(Path(p).resolve()) for p in paths if Path(p).is_file()]

    def _open(self, uri: str) -> Any:
        """What pandas and pyarrow read: the path itself, or a gs:// object's bytes."""
        if not uri.startswith("gs://"):
            return uri
        bucket, _, key = uri[len("gs://") :].partition("/")
        return io.BytesIO(open_store(f"gs://{bucket}", timeout_s=self.timeout_s).read(key))

    def _read(
        self, pattern: str, columns: list[str], what: str
    ) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
        import pandas as pd

        uris = self._files(pattern)
        if not uris:
            raise DataSourceError(f"no {what} file matches {shown(pattern)}")
        frames, read = [], []
        for uri in uris:
            readable = self._open(uri)
            digest = _sha256(readable)
            frames.append(_read_columns(uri, readable, columns))
            read.append({"path": uri, "sha256": digest, "rows": len(frames[-1])})
        return pd.concat(frames, ignore_index=True), read

    def read_trips(self, columns: list[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
        wanted = [*columns, *([self.window["column"]] if self.window else [])]
        trips, files = self._read(self.path, wanted, "trips")
        if self.window:
            column = str(self.window["column"])
            if column not in trips:
                raise DataSourceError(f"window column {shown(column)} is missing from the trips")
            start, end = self.window.get("start"), self.window.get("end")
            trips = _window(
                trips,
                column,
                _when(start) if start else datetime.min.replace(tzinfo=UTC),
                _when(end) if end else datetime.max.replace(tzinfo=UTC),
            ).drop(columns=[column])
        content = hashlib.sha256("".join(f["sha256"] for f in files).encode()).hexdigest()
        lineage = {**self.identity(), "files": files, "rows": len(trips), "content_sha256": content}
        return trips.reset_index(drop=True), lineage

    def inference_batch(self, n_trips: int, seed: int, columns: list[str]) -> pd.DataFrame:
        if not self.batch_path:
            raise DataSourceError(
                "data_source.batch_path is not set: name the files of the trips to predict"
            )
        return self._read(self.batch_path, columns, "batch")[0]

    def outcomes(self, since: datetime, until: datetime) -> pd.DataFrame:
        if not self.outcomes_path:
            raise DataSourceError("data_source.outcomes_path is not set: name the outcomes' files")
        frame = self._read(self.outcomes_path, list(OUTCOMES_COLUMNS), "outcomes")[0]
        return _window(frame, OBSERVED_AT, since, until)


def _when(text: str) -> datetime:
    when = datetime.fromisoformat(str(text))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _sha256(readable: Any) -> str:
    digest = hashlib.sha256()
    if isinstance(readable, io.BytesIO):
        digest.update(readable.getbuffer())
        return digest.hexdigest()
    with open(readable, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_columns(uri: str, readable: Any, columns: list[str]) -> pd.DataFrame:
    """The declared columns a file has (the schema names what is missing)."""
    import pandas as pd

    if isinstance(readable, io.BytesIO):
        readable.seek(0)
    name = uri.lower()
    try:
        if name.endswith((".csv", ".csv.gz")):
            return pd.read_csv(readable, usecols=lambda column: column in columns)
        import pyarrow.parquet as pq

        present = [c for c in columns if c in pq.read_schema(readable).names]
        if isinstance(readable, io.BytesIO):
            readable.seek(0)
        return pq.read_table(readable, columns=present).to_pandas()
    except (OSError, ValueError) as error:
        raise DataSourceError(f"cannot read {uri}: {shown(str(error), 120)}") from None


class BigQuerySource:
    """A table, or a SQL query, read with the real BigQuery client.

    A table is read `FOR SYSTEM_TIME AS OF` a snapshot time taken from the server when the
    features are built and recorded in their lineage (with the SQL that read it), so the
    same rows can be read again within BigQuery's time-travel window (7 days by default). A
    query is run as written, with the query parameters `@snapshot`, `@start` and `@end`:
    pinning its tables to the snapshot is the query's own business. Outcomes come from
    `outcomes_table` (trip_id, eta_minutes, observed_at), inference batches from
    `batch_table`.

    Checked against bqemulator (the tests): a table read at a snapshot, the window, the
    lineage. What the emulator cannot check: BigQuery's time-travel limit and a snapshot
    older than it, IAM, and partition pruning of large tables.
    """

    def __init__(
        self,
        project: str,
        table: str | None = None,
        query: str | None = None,
        window: dict | None = None,
        batch_table: str | None = None,
        outcomes_table: str | None = None,
        timeout_s: float = 60,
    ) -> None:
        if bool(table) == bool(query):
            raise DataSourceError("data_source: set either table or query")
        self.project, self.table, self.query = project, table, query
        self.window = dict(window) if window and window.get("column") else None
        self.batch_table, self.outcomes_table = batch_table, outcomes_table
        self.timeout_s = timeout_s

    def check(self) -> None:
        """Nothing to ask before the read: its errors (table, query, rights) are one line."""

    def identity(self) -> dict[str, Any]:
        return {
            "source": "bigquery",
            "location": self.table or "query",
            "query": self.query,
            "window": self.window,
        }

    def _client(self) -> Any:
        from {{ cookiecutter.package }}.artifacts.bigquery import client

        return client(self.project, self.timeout_s)

    def _sql(self, columns: list[str], snapshot: datetime) -> tuple[str, list[Any]]:
        from google.cloud import bigquery

        parameters: list[Any] = [bigquery.ScalarQueryParameter("snapshot", "TIMESTAMP", snapshot)]
        if self.query:
            sql = f"SELECT * FROM ({self.query})"
        else:
            # The snapshot as a literal (a time this code formats, never user text): the
            # recorded SQL then reads the same rows again as it stands.
            selected = ", ".join(f"`{c}`" for c in columns)
            at = snapshot.astimezone(UTC).isoformat()
            sql = f"SELECT {selected} FROM `{self.table}` FOR SYSTEM_TIME AS OF TIMESTAMP '{at}'"
        if self.window:
            column = str(self.window["column"])
            sql += f" WHERE `{column}` >= @start AND `{column}` < @end"
            for name, default in (("start", datetime.min), ("end", datetime.max)):
                value = self.window.get(name)
                when = _when(value) if value else default.replace(tzinfo=UTC)
                parameters.append(bigquery.ScalarQueryParameter(name, "TIMESTAMP", when))
        return sql, parameters

    def read_trips(
        self, columns: list[str], snapshot: datetime | None = None
    ) -> tuple[pd.DataFrame, dict[str, Any]]:
        from google.cloud import bigquery

        client = self._client()
        try:
            if snapshot is None:  # the server's clock: the newest state it can read
                snapshot = next(iter(client.query("SELECT CURRENT_TIMESTAMP()").result()))[0]
            sql, parameters = self._sql(columns, snapshot)
            job = client.query(sql, job_config=bigquery.QueryJobConfig(query_parameters=parameters))
            # Through Arrow, as the feature store reads (to_dataframe needs db-dtypes).
            result = job.result(timeout=self.timeout_s)
            trips = result.to_arrow(create_bqstorage_client=False).to_pandas()
        except Exception as error:  # the client's errors are many; each becomes one line
            raise DataSourceError(
                f"cannot read {self.table or 'the query'}: {_first_line(error)}"
            ) from None
        lineage = {
            **self.identity(),
            "snapshot": snapshot.isoformat(),
            "sql": sql,
            "rows": len(trips),
            "content_sha256": frame_sha256(trips),
        }
        return trips, lineage

    def _rows(self, sql: str, parameters: list[Any]) -> pd.DataFrame:
        import pandas as pd
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(query_parameters=parameters)
        try:
            rows = self._client().query(sql, job_config=config).result(timeout=self.timeout_s)
            return pd.DataFrame([dict(row.items()) for row in rows])
        except Exception as error:
            raise DataSourceError(f"cannot read BigQuery: {_first_line(error)}") from None

    def inference_batch(self, n_trips: int, seed: int, columns: list[str]) -> pd.DataFrame:
        if not self.batch_table:
            raise DataSourceError("data_source.batch_table is not set: name the trips to predict")
        selected = ", ".join(f"`{c}`" for c in columns)
        return self._rows(f"SELECT {selected} FROM `{self.batch_table}`", [])

    def outcomes(self, since: datetime, until: datetime) -> pd.DataFrame:
        from google.cloud import bigquery

        if not self.outcomes_table:
            raise DataSourceError("data_source.outcomes_table is not set: name the outcomes")
        return self._rows(
            f"SELECT trip_id, eta_minutes, {OBSERVED_AT} FROM `{self.outcomes_table}` "
            f"WHERE {OBSERVED_AT} >= @since AND {OBSERVED_AT} < @until",
            [
                bigquery.ScalarQueryParameter("since", "TIMESTAMP", since),
                bigquery.ScalarQueryParameter("until", "TIMESTAMP", until),
            ],
        )


def _first_line(error: Exception) -> str:
    line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return line if len(line) <= 200 else line[:200] + "..."


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
    store = open_store(artifact_root)
    key = lineage_key(feature_version)
    if not store.exists(key):
        return None
    try:
        return dict(json.loads(store.read_text(key)))
    except ValueError as error:
        raise StoreError(f"{store.uri(key)} is not a lineage record: {error}") from None


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
