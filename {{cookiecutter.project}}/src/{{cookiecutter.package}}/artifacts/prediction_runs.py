"""The record of each batch-inference run, beside its predictions: `runs/{version}/{run_id}.json`.

A run's predictions say what was predicted; its record says from what: the data interval
[start, end), the source, each file read with its sha256 (or the SQL and its parameters),
the rows read, dropped and predicted. Written create-only after the predictions, so a run
that fails before them leaves neither.

The records are also what the evidence of `inv ab` reads outcomes by: the outcomes of the
trips of a run's interval are observed from its start on (`earliest_start`), whenever the
run itself was made (a backfill of last month's partitions pairs with last month's
outcomes). Locally, the next scheduled tick starts where the last one ended (`last_end`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from {{ cookiecutter.package }}.artifacts.intervals import Interval
from {{ cookiecutter.package }}.artifacts.names import run_record_key, runs_prefix
from {{ cookiecutter.package }}.artifacts.predictions import made_before
from {{ cookiecutter.package }}.artifacts.store import ArtifactStore, read_record

# How an inference run that wrote nothing ends its one line (an empty period, a version
# that serves no cluster without shadow predictions).
NOTHING_PREDICTED = "nothing predicted"


def write(store: ArtifactStore, version: str, run_id: str, record: dict[str, Any]) -> str:
    """Record one run (create-only: a run id is written once)."""
    key = run_record_key(version, run_id)
    stamped = {
        "version": version,
        "run_id": run_id,
        **record,
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    store.write_text(key, json.dumps(stamped, indent=2, default=str))
    return store.uri(key)


def read(store: ArtifactStore, version: str) -> list[dict[str, Any]]:
    """`version`'s run records, oldest first; an unreadable one is named in the error."""
    found = (
        read_record(store, key, "a run record") for key in sorted(store.list(runs_prefix(version)))
    )
    return [record for record in found if record is not None]


def find(store: ArtifactStore, version: str, run_id: str) -> dict[str, Any] | None:
    """The record of one run (or shard) of `version`; None when it has none."""
    return read_record(store, run_record_key(version, run_id), "a run record")


def interval_of(record: dict[str, Any]) -> Interval | None:
    found = record.get("interval")
    return Interval.from_json(found) if found else None


def earliest_start(store: ArtifactStore, versions: list[str], since: datetime) -> datetime:
    """The earliest interval start of the runs of `versions` made since `since` (their
    trips' outcomes are observed from then on); `since` when none starts earlier."""
    starts = [since]
    for version in versions:
        for record in read(store, version):
            interval = interval_of(record)
            if interval and not made_before(str(record.get("run_id", "")), since):
                starts.append(interval.start)
    return min(starts)


def last_end(
    store: ArtifactStore, versions: list[str], until: datetime | None = None
) -> datetime | None:
    """Where the last recorded run of any of `versions` ended (of those ending by `until`,
    when given: a run in the future is no place to continue from); None before the first."""
    ends = [
        interval.end
        for version in versions
        for record in read(store, version)
        if (interval := interval_of(record)) and (until is None or interval.end <= until)
    ]
    return max(ends, default=None)
