"""Batch predictions in BigQuery: one table, `{dataset}.predictions`, that every version's
runs append to, each row with `model_version`, `run_id`, `user_cluster` and `predicted_at`.
The A/B split is a `GROUP BY model_version, user_cluster`, computed where the rows are.

Credentials as for the feature store (`artifacts.bigquery`): Application Default
Credentials, or an emulator at `BIGQUERY_EMULATOR_HOST`.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from {{ cookiecutter.package }}.artifacts.bigquery_client import Dataset
from {{ cookiecutter.package }}.artifacts.data_sources import OBSERVED_AT
from {{ cookiecutter.package }}.artifacts.names import check_run_id
from {{ cookiecutter.package }}.artifacts.predictions import (
    OUTCOME_LAG,
    READ_COLUMNS,
    SERVED,
    only_served,
)
from {{ cookiecutter.package }}.artifacts.store import AlreadyExistsError, Held

if TYPE_CHECKING:
    import pandas as pd


class BigQueryPredictions:
    """Every version's batch predictions in one table, a row per trip and run."""

    def __init__(
        self,
        project: str,
        dataset: str,
        table: str = "predictions",
        location: str = "",
        timeout_s: float = 60,
    ) -> None:
        self.table = table
        self.data = Dataset(project, dataset, location, timeout_s)

    def location(self, version: str) -> str:
        return f"bigquery://{self.data.table_id(self.table)}[model_version={version}]"

    def write(self, version: str, run_id: str, frame: pd.DataFrame) -> str:
        import pandas as pd

        check_run_id(run_id)
        rows = frame.reset_index(drop=True)
        if SERVED not in rows:  # every row is served unless the run says otherwise
            rows[SERVED] = True
        rows = rows.assign(
            model_version=version,
            run_id=run_id,
            predicted_at=pd.Timestamp(datetime.now(UTC)).floor("us"),
        )
        self.data.ensure_dataset()
        if self.data.get_table(self.table) is None:
            # Another version's first run may create it first: one table for all.
            with suppress(AlreadyExistsError):
                self.data.create_table(self.table, rows, cluster_by="model_version")
        elif run_id in self.runs(version):
            raise AlreadyExistsError(f"run {run_id} of {version} already wrote predictions")
        self.data.load(self.table, rows, "WRITE_APPEND")
        return f"{self.location(version)}[run_id={run_id}]"

    def runs(self, version: str) -> list[str]:
        if self.data.get_table(self.table) is None:
            return []
        found = self.data.query(
            f"SELECT run_id, MIN(predicted_at) AS first_at FROM "
            f"`{self.data.table_id(self.table)}` WHERE model_version = @version "
            "GROUP BY run_id ORDER BY first_at, run_id",
            version=version,
        )
        return [str(r) for r in found["run_id"]]

    def holdings(self, version: str, before: datetime) -> list[Held]:
        """Each run of `version` whose first row is older than `before`: its rows."""
        table = self.data.get_table(self.table)
        if table is None:
            return []
        found = self.data.query(
            f"SELECT run_id, COUNT(*) AS n, MIN(predicted_at) AS first_at FROM "
            f"`{self.data.table_id(self.table)}` WHERE model_version = @version "
            "GROUP BY run_id HAVING first_at < @before ORDER BY first_at, run_id",
            version=version,
            before=before,
        )
        row_bytes = int(table.num_bytes or 0) / max(int(table.num_rows or 0), 1)
        return [
            Held(f"{self.location(version)}[run_id={run}]", int(n * row_bytes))
            for run, n in zip(found["run_id"], found["n"], strict=True)
        ]

    def remove(self, version: str, held: Held) -> None:
        run_id = held.address.rsplit("[run_id=", 1)[-1].rstrip("]")
        if self.data.get_table(self.table) is not None:
            self.data.execute(
                f"DELETE FROM `{self.data.table_id(self.table)}` "
                "WHERE model_version = @version AND run_id = @run_id",
                version=version,
                run_id=check_run_id(run_id),
            )

    def paired_sums(
        self,
        control: str,
        candidate: str,
        outcomes_table: str,
        since: datetime,
        until: datetime,
        observed_since: datetime | None = None,
    ) -> pd.DataFrame:
        """Per user cluster, the sums of the paired comparison (`ml.paired.PairedSums`) of
        two versions' latest predictions of each trip (runs since `since`) with its latest
        outcome observed in [observed_since or since, until): the join and the aggregation
        in one query, no rows pulled."""
        table = f"`{self.data.table_id(self.table)}`"
        errors = "ABS(error_candidate) - ABS(error_control)"
        return self.data.query(
            f"""
            WITH outcomes AS (
              SELECT trip_id, eta_minutes AS actual, ROW_NUMBER() OVER (
                PARTITION BY trip_id ORDER BY {OBSERVED_AT} DESC) AS newest
              FROM `{outcomes_table}` WHERE {OBSERVED_AT} >= @since AND {OBSERVED_AT} < @until
            ),
            predictions AS (
              SELECT model_version, trip_id, user_cluster, eta_minutes, ROW_NUMBER() OVER (
                PARTITION BY model_version, trip_id ORDER BY predicted_at DESC, run_id DESC
              ) AS newest
              FROM {table} WHERE model_version IN (@control, @candidate)
                AND predicted_at >= @predicted_since
            ),
            pairs AS (
              SELECT c.user_cluster, k.eta_minutes - o.actual AS error_candidate,
                c.eta_minutes - o.actual AS error_control
              FROM predictions AS c
              JOIN predictions AS k ON k.trip_id = c.trip_id
              JOIN outcomes AS o ON o.trip_id = c.trip_id
              WHERE c.model_version = @control AND c.newest = 1
                AND k.model_version = @candidate AND k.newest = 1 AND o.newest = 1
            )
            SELECT user_cluster, COUNT(*) AS n, SUM({errors}) AS d,
              SUM(POW({errors}, 2)) AS d2, SUM(ABS(error_candidate)) AS ae_candidate,
              SUM(ABS(error_control)) AS ae_control, SUM(error_candidate) AS error_candidate,
              SUM(error_control) AS error_control
            FROM pairs GROUP BY user_cluster ORDER BY user_cluster
            """,
            control=control,
            candidate=candidate,
            since=min(observed_since or since, since),
            until=until,
            predicted_since=since - OUTCOME_LAG,
        )

    def read(
        self, version: str, shadow: bool = False, since: datetime | None = None
    ) -> pd.DataFrame:
        if self.data.get_table(self.table) is None:
            import pandas as pd

            return pd.DataFrame(columns=list(READ_COLUMNS))
        return only_served(
            self.data.query(
                f"SELECT * FROM `{self.data.table_id(self.table)}` "
                "WHERE model_version = @version AND predicted_at >= @since "
                "ORDER BY predicted_at, run_id",
                version=version,
                since=since - OUTCOME_LAG if since else datetime(1970, 1, 1, tzinfo=UTC),
            ),
            shadow,
        )[list(READ_COLUMNS)]

    def split(self) -> pd.DataFrame:
        """Served rows per version and user cluster: who served whom (the A/B split).
        Shadow rows (`served` false) are other versions' answers to the same trips: leave
        them out, as here, wherever you read what users were given."""
        return self.data.query(
            "SELECT model_version, user_cluster, COUNT(*) AS n_predictions FROM "
            f"`{self.data.table_id(self.table)}` WHERE served IS NOT FALSE "
            "GROUP BY model_version, user_cluster ORDER BY model_version, user_cluster"
        )
