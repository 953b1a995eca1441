"""The raw trips' declared schema, and shaping: raw rows in, the training frame out.

One schema (pandera, the field's validation library) says what a trip is: its columns,
their types, ranges and nullability. Every data source's rows pass through `shape`, the
synthetic generator's too. Rows that break the schema are counted by column and reason; a
few are dropped and reported, more than `max_invalid_share` of them fail the run with one
line naming the worst column, its count and an example value. A missing column fails it
too, naming the column. Nothing is written before shaping succeeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from {{ cookiecutter.package }}.errors import UserError, shown
from {{ cookiecutter.package }}.ml import TARGET
from {{ cookiecutter.package }}.ml.data import N_AREAS
from {{ cookiecutter.package }}.ml.users import N_USER_CLUSTERS, NO_CLUSTER, user_cluster

if TYPE_CHECKING:
    import pandas as pd
    import pandera.pandas as pa

# What a trip must say: the columns a data source reads (and the only ones it reads).
TRIP_COLUMNS = ("trip_id", "user_cluster", "distance_km", "pickup_hour", "weekday", "area_cluster")
OPTIONAL_COLUMNS = ("user_id",)  # a user's cluster is computed from it when missing


class DataError(UserError, ValueError):
    """Rows that do not fit the schema: a missing column, or too many invalid rows."""


@dataclass
class ShapeReport:
    """What shaping found: rows in, rows kept, invalid rows by (column, reason)."""

    rows_in: int
    rows_out: int = 0
    invalid: dict[str, int] = field(default_factory=dict)  # "column: reason" -> rows
    examples: dict[str, str] = field(default_factory=dict)  # "column: reason" -> a value

    @property
    def rows_invalid(self) -> int:
        return self.rows_in - self.rows_out

    def add(self, other: ShapeReport) -> None:
        """Count `other` (another batch of the same data) in this report."""
        self.rows_in += other.rows_in
        self.rows_out += other.rows_out
        for label, count in other.invalid.items():
            self.invalid[label] = self.invalid.get(label, 0) + count
            self.examples.setdefault(label, other.examples[label])

    def summary(self) -> str:
        if not self.invalid:
            return f"{self.rows_out} rows, all valid"
        return f"{self.rows_out} of {self.rows_in} rows kept, {dropped_rows(self.invalid)}"


def dropped_rows(invalid: dict[str, int]) -> str:
    """`6 rows dropped (distance_km: outside (0, 1000])`: what a release, its log and `inv
    versions --where` say of the rows shaping dropped ('' when none were)."""
    total = sum(invalid.values())
    if not total:
        return ""
    if len(invalid) == 1:
        reasons = next(iter(invalid))
    else:
        reasons = ", ".join(f"{label} in {count}" for label, count in invalid.items())
    return f"{total} row{'s' if total != 1 else ''} dropped ({reasons})"


# What each column means, for people; its type and range come from `trip_schema` below.
COLUMN_NOTES = {
    "trip_id": "the trip's id, unique across all the rows read",
    "user_id": "the rider: an integer or a string (a UUID as text); its user cluster is "
    "computed from it (`ml/users.py`) when there is no `user_cluster`",
    "user_cluster": "the rider's cluster, if the product computed it (then `user_id` is "
    "not needed)",
    "distance_km": "the planned route's length",
    "pickup_hour": "the local hour of the pickup",
    "weekday": "Monday is 0",
    "area_cluster": "the pickup's area cluster (0 is the city centre)",
    TARGET: "the trip's actual duration in minutes: training trips and outcomes only",
}
OPTIONAL_NOTE = "one of `user_id` and `user_cluster`"


def schema_table(n_clusters: int = N_USER_CLUSTERS) -> str:
    """The declared schema as the README's Markdown table: column, type, allowed values,
    required, meaning. Generated, so the README cannot drift from the schema (a test holds
    the two equal)."""
    schema = trip_schema(labelled=True, n_clusters=n_clusters)
    ranges = allowed_ranges(schema)
    rows = ["| column | type | allowed | required | meaning |", "|---|---|---|---|---|"]
    first, *rest = schema.columns
    for name in [first, *OPTIONAL_COLUMNS, *rest]:
        if name in schema.columns:
            column = schema.columns[name]
            dtype = str(column.dtype)
            kind = (
                "string" if dtype.startswith("str") else {"int64": "integer"}.get(dtype, "number")
            )
            allowed = "; ".join(ranges.get(name, {}).values()) or (
                "unique" if column.unique else "any"
            )
        else:
            kind, allowed = "integer or string", "not empty"
        required = {
            "user_cluster": OPTIONAL_NOTE,
            "user_id": OPTIONAL_NOTE,
            TARGET: "to train; in outcomes",
        }.get(name, "yes")
        rows.append(f"| `{name}` | {kind} | {allowed} | {required} | {COLUMN_NOTES[name]} |")
    return "\n".join(rows)


def trip_schema(
    labelled: bool, n_clusters: int = N_USER_CLUSTERS, unique_ids: bool = True
) -> pa.DataFrameSchema:
    """The declared schema of raw trips; `labelled`: with the target (training, outcomes).
    `unique_ids=False` leaves `trip_id`'s uniqueness to the caller: a frame that is one
    batch of many cannot see the others' ids (`ml.uniqueness`)."""
    import pandera.pandas as pa

    columns = {
        "trip_id": pa.Column(str, nullable=False, unique=unique_ids, coerce=True),
        "user_cluster": pa.Column(int, pa.Check.in_range(0, n_clusters - 1), coerce=True),
        "distance_km": pa.Column(float, pa.Check.in_range(0, 1000, include_min=False), coerce=True),
        "pickup_hour": pa.Column(int, pa.Check.in_range(0, 23), coerce=True),
        "weekday": pa.Column(int, pa.Check.in_range(0, 6), coerce=True),
        "area_cluster": pa.Column(int, pa.Check.in_range(0, N_AREAS - 1), coerce=True),
    }
    if labelled:
        columns[TARGET] = pa.Column(
            float, pa.Check.in_range(0, 24 * 60, include_min=False), coerce=True
        )
    return pa.DataFrameSchema(columns, strict=False)


def _reason(check: str, ranges: dict[str, str] | None = None) -> str:
    """pandera's check name as a person reads it; `ranges`: a column's in_range check as
    the interval it allows, e.g. `in_range(0, 1000)` -> `outside (0, 1000]`."""
    if check.startswith(("coerce_dtype(", "dtype(")):
        return "not " + check.split("(", 1)[1].strip("()'")
    if ranges and check in ranges:
        return f"outside {ranges[check]}"
    return {
        "not_nullable": "empty",
        "field_uniqueness": "duplicate",
    }.get(check, check.replace("in_range", "outside range"))


def allowed_ranges(schema: pa.DataFrameSchema) -> dict[str, dict[str, str]]:
    """Per column, its in_range checks as intervals: `{"distance_km": {"in_range(0, 1000)":
    "(0, 1000]"}}` (a bracket where the bound is allowed, a parenthesis where it is not)."""
    ranges: dict[str, dict[str, str]] = {}
    for name, column in schema.columns.items():
        for check in column.checks:
            bounds = check.statistics or {}
            if check.name == "in_range":
                ranges.setdefault(name, {})[str(check.error)] = (
                    f"{'[' if bounds.get('include_min', True) else '('}{bounds['min_value']}, "
                    f"{bounds['max_value']}{']' if bounds.get('include_max', True) else ')'}"
                )
    return ranges


DUPLICATE = "trip_id: duplicate"


def shape(
    trips: pd.DataFrame, labelled: bool, max_invalid_share: float, where: str = "the data"
) -> tuple[pd.DataFrame, ShapeReport]:
    """Validate raw trips against the schema; returns the valid rows (typed) and a report."""
    frame, report = shape_rows(trips, labelled, where)
    check_share(report, max_invalid_share, where)
    return frame, report


def shape_rows(
    trips: pd.DataFrame, labelled: bool, where: str = "the data", duplicates: Any = None
) -> tuple[pd.DataFrame, ShapeReport]:
    """`shape` without the share check: the valid rows and the report of one frame.

    With `duplicates` (the ids found more than once in the whole dataset, `ml.uniqueness`)
    the frame is one batch of many: its rows with those ids are counted and dropped as
    one frame would count and drop them (every row of a duplicated id), and the schema
    does not check uniqueness itself.
    """
    import pandera.pandas as pa

    frame = trips
    report = ShapeReport(rows_in=len(frame))
    if "user_cluster" not in frame and "user_id" in frame:
        frame = _with_user_clusters(frame, report)
    schema = trip_schema(labelled, unique_ids=duplicates is None)
    repeated = None
    if duplicates is not None and len(duplicates) and "trip_id" in frame:
        repeated = frame["trip_id"].astype(str).isin(duplicates)
        if repeated.any():  # counted now, as the first pass of a whole frame counts them
            report.invalid[DUPLICATE] = int(repeated.sum())
            report.examples[DUPLICATE] = shown(frame["trip_id"][repeated].iloc[0], 40)
    ranges = allowed_ranges(schema)  # how a failed range check is named
    while True:  # each failing pass drops at least one row, so this ends
        try:
            frame = schema.validate(frame, lazy=True)
            break
        except pa.errors.SchemaErrors as errors:
            cases = errors.failure_cases
            missing = cases[cases["check"] == "column_in_dataframe"]
            if len(missing):
                raise DataError(
                    f"column {shown(str(missing['failure_case'].iloc[0]))} is missing from "
                    f"{where}: a trip needs {', '.join(schema.columns)}"
                ) from None
            rows = cases[cases["index"].notna()]
            if rows.empty:  # a column-level failure with no row to drop
                first = cases.iloc[0]
                raise DataError(
                    f"column {shown(str(first['column']))} of {where}: "
                    f"{_reason(str(first['check']))}"
                ) from None
            _count(report, rows, ranges)
            # A value that cannot be coerced hides its row's range checks: the next pass
            # sees the rest.
            frame = frame.drop(index=rows["index"].unique())
    if repeated is not None:
        frame = frame[~repeated.reindex(frame.index, fill_value=False)]
    report.rows_out = len(frame)
    return frame.reset_index(drop=True), report


def check_share(report: ShapeReport, max_invalid_share: float, where: str) -> None:
    """Refuse (DataError) data with no trips, or with more invalid rows than allowed."""
    share = report.rows_invalid / max(report.rows_in, 1)
    if report.rows_in == 0 or share > max_invalid_share:
        raise DataError(_too_many(report, share, max_invalid_share, where))


# The declared dtypes as BigQuery types, for shaping in SQL.
SQL_TYPES = {"int64": "INT64", "float64": "FLOAT64"}
NOT_AN_ID = "user_id: not an id (an integer or a string)"


@dataclass(frozen=True)
class SqlShaping:
    """The declared schema as BigQuery SQL over a table's columns (`shaping_sql`):
    `typed` the SQL of each declared column in its declared type, `failures` the condition
    of each reason a row can fail for, labelled as `shape` labels them, with the column
    whose value a failed row is shown by."""

    typed: dict[str, str]
    failures: dict[str, tuple[str, str]]

    def valid(self) -> str:
        """True for a row that fails nothing."""
        failed = " OR ".join(f"IFNULL({c}, FALSE)" for c, _ in self.failures.values())
        return f"NOT ({failed})" if failed else "TRUE"


def shaping_sql(
    present: set[str], labelled: bool, where: str, n_clusters: int = N_USER_CLUSTERS
) -> SqlShaping:
    """The checks of `shape` for a BigQuery table whose columns are `present`: the same
    reasons, row by row (a value that cannot be cast fails its type, not its range; an
    empty one fails `empty` only; every row of a repeated `trip_id` is a duplicate). The
    rows are expected in a relation with a `_copies` column: how many rows share the id."""
    from {{ cookiecutter.package }}.ml.users import user_cluster_sql

    schema = trip_schema(labelled, n_clusters)
    ranges = allowed_ranges(schema)
    typed: dict[str, str] = {}
    failures: dict[str, tuple[str, str]] = {}
    computed = "user_cluster" not in present and "user_id" in present
    if computed:
        key = "TRIM(CAST(`user_id` AS STRING))"
        unusable = f"(`user_id` IS NULL OR {key} = '')"
        failures[NOT_AN_ID] = (unusable, "user_id")
        typed["user_cluster"] = f"IF({unusable}, NULL, {user_cluster_sql('user_id', n_clusters)})"
    for name, column in schema.columns.items():
        if name not in present and not (name == "user_cluster" and computed):
            raise DataError(
                f"column {shown(name)} is missing from {where}: a trip needs "
                f"{', '.join(schema.columns)}"
            )
        dtype = str(column.dtype)
        text = dtype.startswith("str")  # `str`, or pandas' `string[pyarrow]`
        sql_type = "STRING" if text else SQL_TYPES[dtype]
        cast = typed.setdefault(name, f"SAFE_CAST(`{name}` AS {sql_type})")
        if not (name == "user_cluster" and computed):
            failures[f"{name}: empty"] = (f"`{name}` IS NULL", name)
            if not text:
                failures[f"{name}: not {dtype}"] = (
                    f"`{name}` IS NOT NULL AND {cast} IS NULL",
                    name,
                )
        for check in column.checks:
            bounds = check.statistics or {}
            if check.name != "in_range":
                continue
            low = ">=" if bounds.get("include_min", True) else ">"
            high = "<=" if bounds.get("include_max", True) else "<"
            inside = f"{cast} {low} {bounds['min_value']} AND {cast} {high} {bounds['max_value']}"
            label = f"{name}: outside {ranges[name][str(check.error)]}"
            failures[label] = (f"NOT ({inside})", name)
        if column.unique:
            failures[DUPLICATE] = (f"`{name}` IS NOT NULL AND _copies > 1", name)
    return SqlShaping(typed, failures)


def _with_user_clusters(frame: pd.DataFrame, report: ShapeReport) -> pd.DataFrame:
    """Each trip's user cluster from its `user_id` (`ml.users`); a trip whose id is not an
    id (empty, a fraction, missing) is an invalid row, counted and dropped."""
    clusters = user_cluster(frame["user_id"])
    unusable = clusters == NO_CLUSTER
    if unusable.any():
        label = "user_id: not an id (an integer or a string)"
        report.invalid[label] = int(unusable.sum())
        report.examples[label] = shown(frame["user_id"].to_numpy()[unusable][0], 40)
        frame, clusters = frame[~unusable], clusters[~unusable]
    return frame.assign(user_cluster=clusters)


def _count(report: ShapeReport, rows: pd.DataFrame, ranges: dict[str, dict[str, str]]) -> None:
    # A value that fails its coercion also fails the dtype check: one reason per row.
    seen: set[tuple[str, object]] = set()
    for case in rows.itertuples(index=False):
        key = (str(case.column), case.index)
        if key in seen:
            continue
        seen.add(key)
        label = f"{case.column}: {_reason(str(case.check), ranges.get(str(case.column)))}"
        report.invalid[label] = report.invalid.get(label, 0) + 1
        report.examples.setdefault(label, shown(case.failure_case, 40))


def _too_many(report: ShapeReport, share: float, limit: float, where: str) -> str:
    if report.rows_in == 0:
        return f"{where} holds no trips"
    worst = max(report.invalid, key=lambda key: report.invalid[key])
    return (
        f"{report.rows_invalid} of {report.rows_in} rows of {where} are invalid ({share:.1%}, "
        f"more than data.max_invalid_share {limit:.1%}): column {worst} in "
        f"{report.invalid[worst]} rows, e.g. {report.examples[worst]}"
    )
