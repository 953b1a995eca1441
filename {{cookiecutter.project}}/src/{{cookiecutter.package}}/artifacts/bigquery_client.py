"""BigQuery access shared by the feature store, the predictions sink (`artifacts.bigquery`)
and the data source (`artifacts.bigquery_source`): the client (an emulator when
`BIGQUERY_EMULATOR_HOST` is set), Google's errors as StoreErrors, one dataset's tables."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from {{ cookiecutter.package }}.artifacts.store import AlreadyExistsError, StoreError

if TYPE_CHECKING:
    import pandas as pd


def client(project: str, timeout_s: float = 60) -> Any:
    from google.cloud import bigquery

    host = os.environ.get("BIGQUERY_EMULATOR_HOST")
    if host:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        endpoint = host if "://" in host else f"http://{host}"
        return bigquery.Client(
            project=project,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=endpoint),
        )
    with google_errors("connect to BigQuery", project):
        return bigquery.Client(project=project)


@contextmanager
def google_errors(action: str, where: str) -> Iterator[None]:
    """Google's exceptions as one-line StoreErrors (a user error, never a traceback)."""
    from google.api_core.exceptions import Conflict, GoogleAPIError
    from google.auth.exceptions import DefaultCredentialsError, GoogleAuthError

    try:
        yield
    except Conflict:
        raise AlreadyExistsError(f"{where} already exists") from None
    except DefaultCredentialsError:
        raise StoreError(
            f"no Google Cloud credentials to {action} {where}: run `gcloud auth "
            "application-default login` (locally) or use workload identity (CI, cluster)"
        ) from None
    except (GoogleAPIError, GoogleAuthError, OSError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise StoreError(f"cannot {action} {where}: {first}") from None


def schema_of(frame: pd.DataFrame) -> list[Any]:
    from google.cloud import bigquery

    kinds = {"i": "INT64", "u": "INT64", "f": "FLOAT64", "b": "BOOL", "M": "TIMESTAMP"}
    return [
        bigquery.SchemaField(str(name), kinds.get(dtype.kind, "STRING"))
        for name, dtype in frame.dtypes.items()
    ]


def _parquet(frame: pd.DataFrame) -> io.BytesIO:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    buffer.seek(0)
    return buffer


class Dataset:
    """One BigQuery dataset: its tables created, loaded from frames and queried."""

    def __init__(self, project: str, dataset: str, location: str, timeout_s: float) -> None:
        self.project, self.dataset, self.location = project, dataset, location
        self.timeout_s = timeout_s
        self.bq = client(project, timeout_s)

    def table_id(self, table: str) -> str:
        return f"{self.project}.{self.dataset}.{table}"

    def ensure_dataset(self) -> None:
        from google.cloud import bigquery

        dataset = bigquery.Dataset(f"{self.project}.{self.dataset}")
        if self.location:
            dataset.location = self.location
        with google_errors("create dataset", dataset.dataset_id):
            self.bq.create_dataset(dataset, exists_ok=True, timeout=self.timeout_s)

    def get_table(self, table: str) -> Any | None:
        from google.api_core.exceptions import NotFound

        with google_errors("read", self.table_id(table)):
            try:
                return self.bq.get_table(self.table_id(table), timeout=self.timeout_s)
            except NotFound:
                return None

    def create_table(self, table: str, frame: pd.DataFrame, cluster_by: str = "") -> Any:
        from google.cloud import bigquery

        definition = bigquery.Table(self.table_id(table), schema=schema_of(frame))
        if cluster_by:
            definition.clustering_fields = [cluster_by]
        with google_errors("create", self.table_id(table)):
            return self.bq.create_table(definition, timeout=self.timeout_s)

    def load(self, table: str, frame: pd.DataFrame, disposition: str) -> None:
        from google.cloud import bigquery

        config = bigquery.LoadJobConfig(source_format="PARQUET", write_disposition=disposition)
        with google_errors("write", self.table_id(table)):
            job = self.bq.load_table_from_file(
                _parquet(frame), self.table_id(table), job_config=config, timeout=self.timeout_s
            )
            job.result(timeout=self.timeout_s)

    def query(self, sql: str, **parameters: Any) -> pd.DataFrame:
        with google_errors("query", f"{self.project}.{self.dataset}"):
            rows = self._job(sql, parameters).result(timeout=self.timeout_s)
            # Through Arrow: int64 stays int64 (to_dataframe gives nullable Int64).
            return rows.to_arrow(create_bqstorage_client=False).to_pandas()

    def execute(self, sql: str, **parameters: Any) -> None:
        """A statement with no result (DML: `DELETE ...`), waited for."""
        with google_errors("write", f"{self.project}.{self.dataset}"):
            self._job(sql, parameters).result(timeout=self.timeout_s)

    def query_batches(self, sql: str, **parameters: Any) -> Iterator[pd.DataFrame]:
        """The result of `sql` a page at a time (REST pages of PAGE_ROWS), never whole."""
        with google_errors("query", f"{self.project}.{self.dataset}"):
            rows = self._job(sql, parameters).result(page_size=PAGE_ROWS, timeout=self.timeout_s)
            for batch in rows.to_arrow_iterable():
                yield batch.to_pandas()

    def _job(self, sql: str, parameters: dict[str, Any]) -> Any:
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(
            query_parameters=[
                bigquery.ScalarQueryParameter(name, _type_of(value), value)
                for name, value in parameters.items()
            ]
        )
        return self.bq.query(sql, job_config=config, timeout=self.timeout_s)


PAGE_ROWS = 200_000  # rows of one page of a streamed query result


def _type_of(value: Any) -> str:
    if isinstance(value, datetime):
        return "TIMESTAMP"
    return "INT64" if isinstance(value, int) else "STRING"
