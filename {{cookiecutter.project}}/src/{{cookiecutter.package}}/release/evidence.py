"""The evidence traffic moves on: each live version against a control, on outcomes.

Both versions' predictions of the same trips (served and shadow rows of the predictions
sink) are joined with the outcomes the data source has observed in a window, and reduced
to the paired verdict of `ml.paired`, per user cluster and overall. With predictions and
outcomes both in BigQuery the join and the sums run there, in one query; otherwise the
two versions' rows are read and joined here.

`inv ab` shows these comparisons; `inv traffic --promote` and `--guard` decide on them and
record them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from packaging.version import Version

from {{ cookiecutter.package }}.artifacts import prediction_runs, traffic
from {{ cookiecutter.package }}.artifacts.data_sources import read_outcomes, when
from {{ cookiecutter.package }}.artifacts.store import StoreError
from {{ cookiecutter.package }}.artifacts.traffic import Assignment
from {{ cookiecutter.package }}.errors import ReleaseError, shown
from {{ cookiecutter.package }}.ml.paired import (
    Gates,
    PairedSums,
    Verdict,
    holm,
    overall,
    paired_sums,
    sums_by_cluster,
)
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.release.traffic_moves import live_versions

EPOCH = datetime(1970, 1, 2, tzinfo=UTC)  # a day after: EPOCH - OUTCOME_LAG is a date


@dataclass(frozen=True)
class Comparison:
    """A candidate against the control on the outcomes of [since, until)."""

    overall: Verdict
    clusters: dict[int, Verdict]
    since: datetime
    until: datetime

    @property
    def candidate(self) -> str:
        return self.overall.candidate

    @property
    def control(self) -> str:
        return self.overall.control

    def worse_clusters(self) -> list[int]:
        """The clusters whose verdict, adjusted for their number, is `worse`."""
        return [cluster for cluster, v in self.clusters.items() if v.verdict == "worse"]

    def evidence(self) -> dict[str, Any]:
        return {
            **self.overall.evidence(),
            "clusters_worse": self.worse_clusters(),
            "since": self.since.isoformat(timespec="seconds"),
            "until": self.until.isoformat(timespec="seconds"),
        }


def gates(ctx: ReleaseContext) -> Gates:
    return Gates.of(ctx.cfg.release.gates)


def default_control(assignment: Assignment | None, live: list[str], besides: str = "") -> str:
    """The live version that serves the most clusters (the older one on a tie)."""
    candidates = [v for v in live if v != besides]
    if not candidates:
        raise ReleaseError(f"no live version to compare {besides or 'with'} against")

    def served(version: str) -> int:
        return len(assignment.clusters_of(version)) if assignment else 0

    return sorted(candidates, key=lambda v: (-served(v), Version(v)))[0]


def went_live(ctx: ReleaseContext, version: str) -> datetime:
    """When `version` was released here (its release record); the epoch if it does not say."""
    try:
        record = json.loads(ctx.store.read_text(ctx.names_of(version).release_record_key))
    except (StoreError, ValueError):
        return EPOCH
    released = record.get("released_at") if isinstance(record, dict) else None
    return when(released) if released else EPOCH


def _sums(
    ctx: ReleaseContext, control: str, candidate: str, since: datetime, until: datetime
) -> dict[int, PairedSums]:
    # The outcomes of the trips both predicted: from the source they read them from.
    sink, source = ctx.predictions, ctx.released_data_source(control)
    # The trips of runs made since `since` are observed from their intervals' start on: a
    # backfill of last month's partitions pairs with last month's outcomes.
    observed_since = prediction_runs.earliest_start(ctx.store, [control, candidate], since)
    in_one_query = getattr(sink, "paired_sums", None)
    outcomes_table = getattr(source, "outcomes_table", None)
    if in_one_query is not None and outcomes_table:
        return sums_by_cluster(
            in_one_query(control, candidate, outcomes_table, since, until, observed_since)
        )
    outcomes = read_outcomes(source, observed_since, until)
    if outcomes.empty:
        return {}
    return paired_sums(
        sink.read(control, shadow=True, since=since),
        sink.read(candidate, shadow=True, since=since),
        outcomes,
    )


def compare(
    ctx: ReleaseContext,
    candidate: str,
    control: str,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Comparison:
    """`candidate` against `control` on the trips both predicted in runs made since `since`
    (by default the candidate's release) whose outcomes were observed by `until` (now)."""
    if candidate == control:
        raise ReleaseError(f"{candidate} cannot be compared with itself: choose another control")
    since = since or went_live(ctx, candidate)
    until = until or datetime.now(UTC)
    by_cluster = _sums(ctx, control, candidate, since, until)
    rules = gates(ctx)
    return Comparison(
        overall=Verdict(candidate, control, overall(by_cluster), rules),
        clusters=holm(
            {c: Verdict(candidate, control, s, rules) for c, s in sorted(by_cluster.items())}
        ),
        since=since,
        until=until,
    )


def compare_live(ctx: ReleaseContext, control: str = "", since: str = "") -> list[Comparison]:
    """Every other live version against the control (`inv ab`)."""
    live = live_versions(ctx)
    if not live:
        raise ReleaseError(f"no live version on {ctx.env}: release one first")
    assignment = traffic.current(ctx.store)
    control = control or default_control(assignment, live)
    if control not in live:
        raise ReleaseError(f"control {control} is not live on {ctx.env}: live are {live or 'none'}")
    try:
        start = when(since) if since else None
    except ValueError:
        raise ReleaseError(
            f"invalid --since {shown(since)}: use an ISO date or time, e.g. 2026-11-01"
        ) from None
    return [compare(ctx, version, control, start) for version in live if version != control]
