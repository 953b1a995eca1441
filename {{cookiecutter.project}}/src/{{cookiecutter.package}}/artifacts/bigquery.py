"""Features in BigQuery, versioned as the rest of a release.

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

Predictions in BigQuery are `artifacts.bigquery_predictions`.

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
from {{ cookiecutter.package }}.artifacts.feature_store import concatenated
from {{ cookiecutter.package }}.artifacts.names import bigquery_features_table
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
