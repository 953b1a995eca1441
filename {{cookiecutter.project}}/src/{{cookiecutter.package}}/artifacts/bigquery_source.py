"""Trips from BigQuery: a table read at a pinned snapshot, or a query."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from {{ cookiecutter.package }}.artifacts.bigquery_client import client, google_errors
from {{ cookiecutter.package }}.artifacts.data_sources import (
    OBSERVED_AT,
    DataSourceError,
    Keep,
    frame_sha256,
    when,
)
from {{ cookiecutter.package }}.artifacts.intervals import Interval

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Relation:
    """Trips as a BigQuery relation: the SQL, its parameters, the columns it has, and the
    snapshot it is pinned to."""

    sql: str
    parameters: list[Any]
    present: set[str]
    snapshot: datetime

    def lineage(self, identity: dict[str, Any]) -> dict[str, Any]:
        return {**identity, "snapshot": self.snapshot.isoformat(), "sql": self.sql}


class BigQuerySource:
    """A table, or a SQL query, read with the real BigQuery client.

    A table is read `FOR SYSTEM_TIME AS OF` a snapshot time taken from the server when the
    features are built and recorded in their lineage (with the SQL that read it), so the
    same rows can be read again within BigQuery's time-travel window (7 days by default). A
    query is run as written, with the query parameters `@snapshot`, `@start` and `@end`:
    pinning its tables to the snapshot is the query's own business. Outcomes come from
    `outcomes_table` (trip_id, eta_minutes, observed_at).

    An inference run predicts the trips of its data interval: `batch_query` runs with
    `@start` and `@end` as parameters, or `batch_table` is read with `batch_column` (a
    `TIMESTAMP`) in [@start, @end); a table without `batch_column` is read whole each run.
    The run records the SQL and the interval. An interval with no rows is an empty period
    (nothing predicted), or an error with `require_batch`.

    Google's errors (a missing table, a bad query, no credentials) are one line, as the
    feature store's are (`bigquery.google_errors`).

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
        batch_query: str | None = None,
        batch_column: str | None = None,
        require_batch: bool = False,
        timeout_s: float = 60,
    ) -> None:
        if bool(table) == bool(query):
            raise DataSourceError("data_source: set either table or query")
        if batch_table and batch_query:
            raise DataSourceError("data_source: set either batch_table or batch_query, not both")
        self.project, self.table, self.query = project, table, query
        self.window = dict(window) if window and window.get("column") else None
        self.batch_table, self.outcomes_table = batch_table, outcomes_table
        self.batch_query, self.batch_column = batch_query, batch_column or None
        self.require_batch = bool(require_batch)
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
        return client(self.project, self.timeout_s)

    def _selected(self, columns: list[str], present: set[str]) -> str:
        """The declared columns the table has (the schema names what is missing); a trip's
        user cluster computed in BigQuery from its `user_id` when the table has no
        `user_cluster` (the mapping of `ml.users`, the same as in Python)."""
        from {{ cookiecutter.package }}.ml.users import user_cluster_sql

        selected = [f"`{c}`" for c in columns if c in present]
        if "user_cluster" in columns and "user_cluster" not in present and "user_id" in present:
            selected.append(f"{user_cluster_sql('user_id')} AS user_cluster")
        return ", ".join(selected) or "*"

    def _sql(
        self, columns: list[str], snapshot: datetime, present: set[str] | None = None
    ) -> tuple[str, list[Any]]:
        from google.cloud import bigquery

        parameters: list[Any] = [bigquery.ScalarQueryParameter("snapshot", "TIMESTAMP", snapshot)]
        if self.query:
            sql = f"SELECT * FROM ({self.query})"
        else:
            # The snapshot as a literal (a time this code formats, never user text): the
            # recorded SQL then reads the same rows again as it stands.
            selected = self._selected(columns, set(columns) if present is None else present)
            at = snapshot.astimezone(UTC).isoformat()
            sql = f"SELECT {selected} FROM `{self.table}` FOR SYSTEM_TIME AS OF TIMESTAMP '{at}'"
        if self.window:
            column = str(self.window["column"])
            sql += f" WHERE `{column}` >= @start AND `{column}` < @end"
            for name, default in (("start", datetime.min), ("end", datetime.max)):
                value = self.window.get(name)
                bound = when(value) if value else default.replace(tzinfo=UTC)
                parameters.append(bigquery.ScalarQueryParameter(name, "TIMESTAMP", bound))
        return sql, parameters

    def relation(self, columns: list[str], snapshot: datetime | None = None) -> Relation:
        """The SQL that reads the trips (pinned to a snapshot, the window applied), with its
        parameters and the columns it has: what `read_trips` runs, and what features built
        in BigQuery select from. Asks the server for its time and the table's schema (or
        the query's, with no row), never for trips."""
        client = self._client()
        with google_errors("read", self.table or "the query"):
            if snapshot is None:  # the server's clock: the newest state it can read
                snapshot = next(iter(client.query("SELECT CURRENT_TIMESTAMP()").result()))[0]
            if self.query:
                probe = client.query(f"SELECT * FROM ({self.query}) LIMIT 0").result()
                present = {field.name for field in probe.schema}
            else:
                present = {f.name for f in client.get_table(self.table).schema}
        sql, parameters = self._sql(columns, snapshot, None if self.query else present)
        return Relation(sql, parameters, present, snapshot)

    def read_trips(
        self, columns: list[str], snapshot: datetime | None = None
    ) -> tuple[pd.DataFrame, dict[str, Any]]:
        from google.cloud import bigquery

        relation = self.relation(columns, snapshot)
        with google_errors("read", self.table or "the query"):
            job = self._client().query(
                relation.sql,
                job_config=bigquery.QueryJobConfig(query_parameters=relation.parameters),
            )
            # Through Arrow, as the feature store reads (to_dataframe needs db-dtypes).
            result = job.result(timeout=self.timeout_s)
            trips = result.to_arrow(create_bqstorage_client=False).to_pandas()
        return trips, {
            **relation.lineage(self.identity()),
            "rows": len(trips),
            "content_sha256": frame_sha256(trips),
        }

    def count(self, sql: str, parameters: list[Any]) -> dict[str, Any]:
        """The one row of an aggregate query over the trips (counts, never trips)."""
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(query_parameters=parameters)
        with google_errors("read", self.table or "the query"):
            (row,) = list(
                self._client().query(sql, job_config=config).result(timeout=self.timeout_s)
            )
            return dict(row.items())

    def _rows(self, sql: str, parameters: list[Any]) -> pd.DataFrame:
        import pandas as pd
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(query_parameters=parameters)
        with google_errors("read", "BigQuery"):
            rows = self._client().query(sql, job_config=config).result(timeout=self.timeout_s)
            return pd.DataFrame([dict(row.items()) for row in rows])

    def inference_batch(
        self,
        n_trips: int,
        seed: int,
        columns: list[str],
        interval: Interval,
        keep: Keep | None = None,
    ) -> tuple[pd.DataFrame, dict[str, Any]]:
        import pandas as pd
        from google.cloud import bigquery

        parameters = [
            bigquery.ScalarQueryParameter("start", "TIMESTAMP", interval.start),
            bigquery.ScalarQueryParameter("end", "TIMESTAMP", interval.end),
        ]
        if self.batch_query:
            sql = f"SELECT * FROM ({self.batch_query})"
        elif self.batch_table:
            sql = f"SELECT {', '.join(f'`{c}`' for c in columns)} FROM `{self.batch_table}`"
            if self.batch_column:
                sql += f" WHERE `{self.batch_column}` >= @start AND `{self.batch_column}` < @end"
        else:
            raise DataSourceError(
                "data_source.batch_table (or batch_query) is not set: name the trips to predict"
            )
        trips = self._rows(sql, parameters)
        in_interval = len(trips)
        if trips.empty:
            if self.require_batch:
                raise DataSourceError(
                    f"the batch query found no trips in {interval} (data_source.require_batch "
                    "is set)"
                )
            trips = pd.DataFrame(columns=columns)
        elif keep is not None:
            trips = trips[keep(trips)].reset_index(drop=True)
        read = {"source": "bigquery", "location": self.batch_table or "batch_query"}
        return trips, {
            **read,
            "sql": sql,
            **interval.to_json(),
            "rows": in_interval,
            "kept": len(trips),
        }

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
