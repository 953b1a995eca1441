"""Features and batch predictions in BigQuery, versioned as the rest of a release.

Features, two layouts (`layout` in `conf/feature_store/bigquery.yaml`):
- `per_version`: a table per feature version, `{dataset}.train_v1_2_0`. For features whose
  columns change between versions.
- `version_column`: one table, `{dataset}.train`, with a `feature_version` column it is
  clustered by. For features whose columns stay the same.

Either way a feature version is written once. Its commit point comes last: the
`complete=true` label on its table (per_version) or its row in `{dataset}.train__commits`
(version_column). A run killed before it leaves rows that nothing reads as complete; the
next write of that version removes them first. Rows carry their position (`row_number`) so
they are read back in the order written, as training's split expects.

Predictions: one table, `{dataset}.predictions`, that every version's runs append to, each
row with `model_version`, `run_id`, `user_cluster` and `predicted_at`. The A/B split is a
`GROUP BY model_version, user_cluster`.

Credentials as for GCS: Application Default Credentials (workload identity in CI and on the
cluster). `BIGQUERY_EMULATOR_HOST` (host:port) points the client at an emulator instead, with
anonymous credentials; the tests use one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from {{ cookiecutter.package }}.artifacts.bigquery_client import Dataset, google_errors
from {{ cookiecutter.package }}.artifacts.data_sources import OBSERVED_AT
from {{ cookiecutter.package }}.artifacts.feature_store import concatenated
from {{ cookiecutter.package }}.artifacts.names import bigquery_features_table, check_run_id
from {{ cookiecutter.package }}.artifacts.predictions import (
    OUTCOME_LAG,
    READ_COLUMNS,
    SERVED,
    only_served,
)
from {{ cookiecutter.package }}.artifacts.store import AlreadyExistsError, Held, StoreError

if TYPE_CHECKING:
    import pandas as pd

LAYOUTS = ("per_version", "version_column")
ROW_NUMBER = "row_number"
COMPLETE = {"complete": "true"}
WAIT_FOR_OTHER_WRITER_S = 300


class BigQueryFeatureStore:
    """Feature versions in a BigQuery dataset (see the module docstring for the layouts)."""

    def __init__(
        self,
        project: str,
        dataset: str,
        layout: str = "per_version",  # checked here: it comes from configuration
        location: str = "",
        timeout_s: float = 60,
    ) -> None:
        if layout not in LAYOUTS:
            raise StoreError(f"feature_store.layout must be one of {LAYOUTS}, not {layout!r}")
        self.layout = layout
        self.data = Dataset(project, dataset, location, timeout_s)

    def _table(self, feature_version: str, split: str) -> str:
        per_version = self.layout == "per_version"
        return bigquery_features_table(split, feature_version if per_version else None)

    def location(self, feature_version: str, split: str = "train") -> str:
        table = f"bigquery://{self.data.table_id(self._table(feature_version, split))}"
        if self.layout == "version_column":
            return f"{table}[feature_version={feature_version}]"
        return table

    # -- the commit point of each layout --------------------------------------------------
    def exists(self, feature_version: str, split: str = "train") -> bool:
        if self.layout == "per_version":
            table = self.data.get_table(self._table(feature_version, split))
            return table is not None and dict(table.labels).items() >= COMPLETE.items()
        commits = f"{self._table(feature_version, split)}__commits"
        if self.data.get_table(commits) is None:
            return False
        found = self.data.query(
            f"SELECT COUNT(*) AS n FROM `{self.data.table_id(commits)}` "
            "WHERE feature_version = @feature_version",
            feature_version=feature_version,
        )
        return int(found["n"].iloc[0]) > 0

    # -- retention ----------------------------------------------------------------------
    def verify(self, feature_version: str, split: str = "train") -> None:
        """Nothing to check against: a committed table (or commit row) is BigQuery's, and
        its rows change only through this store's create-only writes."""

    def holdings(self, feature_version: str) -> list[Held]:
        """The version's table (per_version), or its commit row then its rows
        (version_column); their bytes as BigQuery counts them."""
        table = self.data.get_table(self._table(feature_version, "train"))
        if table is None:
            return []
        if self.layout == "per_version":
            return [Held(self.location(feature_version), int(table.num_bytes or 0))]
        rows = self.data.query(
            f"SELECT COUNT(*) AS n FROM `{self.data.table_id(table.table_id)}` "
            "WHERE feature_version = @feature_version",
            feature_version=feature_version,
        )
        n = int(rows["n"].iloc[0])
        committed = self.exists(feature_version)
        share = n / max(int(table.num_rows or 0), 1)
        commits = self.location(feature_version).replace("[", "__commits[", 1)
        found = [Held(commits, 0)] if committed else []
        if n:
            found.append(Held(self.location(feature_version), int(share * (table.num_bytes or 0))))
        return found

    def remove(self, feature_version: str, held: Held) -> None:
        table_id = self.data.table_id(self._table(feature_version, "train"))
        if self.layout == "per_version":
            with google_errors("delete", table_id):
                self.data.bq.delete_table(table_id, not_found_ok=True, timeout=self.data.timeout_s)
            return
        target = table_id + ("__commits" if "__commits[" in held.address else "")
        if self.data.get_table(target.rsplit(".", 1)[-1]) is not None:
            from google.cloud import bigquery

            sql = f"DELETE FROM `{target}` WHERE feature_version = @feature_version"
            self._run(sql, bigquery.QueryJobConfig(), feature_version)

    def writer(self, feature_version: str, split: str = "train") -> BigQueryFeatureWriter:
        if self.exists(feature_version, split):
            raise AlreadyExistsError(
                f"features {feature_version} already exist at "
                f"{self.location(feature_version, split)}; feature versions are immutable"
            )
        self.data.ensure_dataset()
        return BigQueryFeatureWriter(self, feature_version, split)

    def write(self, feature_version: str, frame: pd.DataFrame, split: str = "train") -> None:
        writer = self.writer(feature_version, split)
        writer.write(frame)
        writer.commit()

    def create_from_query(
        self, feature_version: str, select: str, parameters: list[Any], split: str = "train"
    ) -> int:
        """Write the feature version as the result of `select` (its columns: the features'
        and `row_number`), in BigQuery: no row leaves it. The layout's commit point comes
        last, as for `writer`; returns the rows written."""
        from google.cloud import bigquery

        if self.exists(feature_version, split):
            raise AlreadyExistsError(
                f"features {feature_version} already exist at "
                f"{self.location(feature_version, split)}; feature versions are immutable"
            )
        self.data.ensure_dataset()
        table = self._table(feature_version, split)
        table_id = self.data.table_id(table)
        config = bigquery.QueryJobConfig(query_parameters=parameters)
        if self.layout == "per_version":
            with google_errors("delete", table_id):  # a killed run's incomplete table
                self.data.bq.delete_table(table_id, not_found_ok=True)
            sql = f"CREATE TABLE `{table_id}` AS {select}"
        else:
            if self.data.get_table(table) is None:
                empty = f"SELECT @feature_version AS feature_version, * FROM ({select}) WHERE FALSE"
                sql = (
                    f"CREATE TABLE IF NOT EXISTS `{table_id}` CLUSTER BY feature_version AS {empty}"
                )
                self._run(sql, config, feature_version)
            self._run(
                f"DELETE FROM `{table_id}` WHERE feature_version = @feature_version",
                config,
                feature_version,
            )
            sql = (
                f"INSERT INTO `{table_id}` "
                f"SELECT @feature_version AS feature_version, * FROM ({select})"
            )
        self._run(sql, config, feature_version)
        rows = int(
            self.data.query(
                f"SELECT COUNT(*) AS n FROM `{table_id}`"
                + (
                    " WHERE feature_version = @feature_version"
                    if self.layout != "per_version"
                    else ""
                ),
                **({"feature_version": feature_version} if self.layout != "per_version" else {}),
            )["n"].iloc[0]
        )
        self._commit(feature_version, split, rows)
        return rows

    def _run(self, sql: str, config: Any, feature_version: str) -> None:
        from google.cloud import bigquery

        parameters = [*config.query_parameters]
        if "@feature_version" in sql:
            parameters.append(
                bigquery.ScalarQueryParameter("feature_version", "STRING", feature_version)
            )
        job_config = bigquery.QueryJobConfig(query_parameters=parameters)
        with google_errors("write", f"features {feature_version}"):
            self.data.bq.query(sql, job_config=job_config, timeout=self.data.timeout_s).result(
                timeout=self.data.timeout_s
            )

    def _commit(self, feature_version: str, split: str, rows: int) -> None:
        """The layout's commit point: the table's label, or the version's commit row."""
        import pandas as pd

        table = self._table(feature_version, split)
        if self.layout == "per_version":
            created = self.data.get_table(table)
            if created is None:
                raise StoreError(f"{self.data.table_id(table)} is gone before its commit")
            created.labels = COMPLETE
            with google_errors("commit", self.data.table_id(table)):
                self.data.bq.update_table(created, ["labels"], timeout=self.data.timeout_s)
            return
        commits = f"{table}__commits"
        commit = pd.DataFrame(
            {
                "feature_version": [feature_version],
                "n_rows": [rows],
                "committed_at": [datetime.now(UTC).isoformat(timespec="seconds")],
            }
        )
        if self.data.get_table(commits) is None:
            with suppress(AlreadyExistsError):
                self.data.create_table(commits, commit)
        self.data.load(commits, commit, "WRITE_APPEND")

    def wait_for_other_writer(self, feature_version: str, split: str) -> None:
        deadline = time.monotonic() + WAIT_FOR_OTHER_WRITER_S
        while not self.exists(feature_version, split):
            if time.monotonic() > deadline:
                raise StoreError(
                    f"{self.location(feature_version, split)} is being written by another "
                    f"run that has not finished in {WAIT_FOR_OTHER_WRITER_S} s"
                )
            time.sleep(2)

    def read_batches(self, feature_version: str, split: str = "train") -> Iterator[pd.DataFrame]:
        if not self.exists(feature_version, split):
            raise StoreError(f"no features {feature_version} at {self.location(feature_version)}")
        table = self.data.table_id(self._table(feature_version, split))
        if self.layout == "per_version":
            sql = f"SELECT * FROM `{table}` ORDER BY {ROW_NUMBER}"
        else:
            sql = (
                f"SELECT * EXCEPT (feature_version) FROM `{table}` "
                f"WHERE feature_version = @feature_version ORDER BY {ROW_NUMBER}"
            )
        parameters = {"feature_version": feature_version} if "@" in sql else {}
        for frame in self.data.query_batches(sql, **parameters):
            yield frame.drop(columns=[ROW_NUMBER]).reset_index(drop=True)

    def read(self, feature_version: str, split: str = "train") -> pd.DataFrame:
        return concatenated(self.read_batches(feature_version, split))


class BigQueryFeatureWriter:
    """One write of a feature version, a load job per part. The first part makes the table
    (per_version; a killed run's incomplete table goes first) or removes a killed run's
    uncommitted rows (version_column); `commit` is the layout's commit point."""

    def __init__(self, owner: BigQueryFeatureStore, feature_version: str, split: str) -> None:
        self.owner, self.feature_version, self.split = owner, feature_version, split
        self.table = owner._table(feature_version, split)
        self.rows = 0
        self.created: Any = None

    @property
    def data(self) -> Dataset:
        return self.owner.data

    def write(self, frame: pd.DataFrame) -> None:
        rows = frame.reset_index(drop=True)
        rows[ROW_NUMBER] = range(self.rows, self.rows + len(rows))
        if self.owner.layout == "version_column":
            rows.insert(0, "feature_version", self.feature_version)
        if not self.rows and self.created is None:
            self._begin(rows)
        self.data.load(self.table, rows, "WRITE_APPEND")
        self.rows += len(rows)

    def write_file(self, path: Path) -> None:
        import pandas as pd

        self.write(pd.read_parquet(path))

    def _begin(self, rows: pd.DataFrame) -> None:
        if self.owner.layout == "per_version":
            if self.data.get_table(self.table) is not None:
                # Not complete (the writer checked): what a run killed half way left. Its
                # inputs are this run's inputs, so its rows go and are written again.
                with google_errors("delete", self.data.table_id(self.table)):
                    self.data.bq.delete_table(self.data.table_id(self.table), not_found_ok=True)
            try:
                self.created = self.data.create_table(self.table, rows)
            except AlreadyExistsError:
                self.owner.wait_for_other_writer(self.feature_version, self.split)
                raise AlreadyExistsError(
                    f"features {self.feature_version} were written by another run"
                ) from None
            return
        if self.data.get_table(self.table) is None:
            # Another version's first write may create it first: one table for all.
            with suppress(AlreadyExistsError):
                self.data.create_table(self.table, rows, cluster_by="feature_version")
        self.created = True
        # Rows of this version without a commit are a dead run's: remove them first.
        self.data.query(
            f"DELETE FROM `{self.data.table_id(self.table)}` "
            "WHERE feature_version = @feature_version",
            feature_version=self.feature_version,
        )

    def commit(self) -> int:
        self.owner._commit(self.feature_version, self.split, self.rows)
        return self.rows


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
