"""`inv drift`: each live version's inputs and predictions since a moment, against what it
was trained on (`ml.drift`), before any outcome arrives.

The reference is the one the release stored with the model (`reference` in its metadata);
what the version was asked to predict is the merged summary of its batch inference runs
recorded since `--since` (`inputs` in each run record). Both are summaries, never trips:
a month of runs is read in the time it takes to read their records. Runs that predicted the
same trips (an interval run again, a second tick) count once: their summaries carry the
digest of their trip ids.

A call is a statistic (`ml.drift`): per column and group (the version, each user cluster of
at least MIN_CLUSTER_TRIPS trips), a chi-square test of homogeneity against the reference,
Holm-adjusted over every column of every group of the version, and the distance beyond its
threshold. Its false-alarm rate at every sample size is checked in `tests/test_drift.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path
from typing import Any

from {{ cookiecutter.package }}.artifacts import models, prediction_runs
from {{ cookiecutter.package }}.artifacts.intervals import moment
from {{ cookiecutter.package }}.errors import UserError
from {{ cookiecutter.package }}.ml import drift
from {{ cookiecutter.package }}.release.context import ReleaseContext
from {{ cookiecutter.package }}.release.traffic_moves import live_versions
from {{ cookiecutter.package }}.reports import charts, tables

MIN_CLUSTER_TRIPS = 200  # fewer trips than this in a cluster: too noisy to score it

LABELS = {
    "distance_km": "distance (km)",
    "pickup_hour": "pickup hour",
    "area_cluster": "area cluster",
    "is_weekend": "weekend (1) or not (0)",
    drift.PREDICTION: "predicted ETA (minutes)",
}


@dataclass
class VersionDrift:
    version: str
    since: datetime
    runs: int = 0
    trips: int = 0
    columns: list[drift.ColumnDrift] = field(default_factory=list)
    reference: dict[str, Any] | None = None
    current: dict[str, Any] | None = None
    note: str = ""  # why there is nothing to compare
    # Per user cluster with at least MIN_CLUSTER_TRIPS trips: its columns' drift.
    clusters: dict[str, list[drift.ColumnDrift]] = field(default_factory=dict)
    # The clusters with fewer trips than that: cluster -> trips.
    too_few: dict[str, int] = field(default_factory=dict)
    repeated: int = 0  # runs left out: they predicted trips another run already counted

    @property
    def drifted(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]


def settings(ctx: ReleaseContext) -> tuple[float, float, float, float]:
    found = ctx.cfg.get("drift") or {}
    try:
        return (
            float(found.get("numeric_threshold", 0.1)),
            float(found.get("categorical_threshold", 0.1)),
            float(found.get("since_hours", 24)),
            float(found.get("alpha", 0.05)),
        )
    except (TypeError, ValueError) as error:
        raise UserError(f"drift: {error}") from None


def _once(runs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The runs' summaries, each set of trips once (by the digest of their ids)."""
    seen: set[str] = set()
    kept = []
    for run in runs:
        digest = run["inputs"].get("trips")
        if digest is not None and digest in seen:
            continue
        if digest is not None:
            seen.add(digest)
        kept.append(run["inputs"])
    return kept, len(runs) - len(kept)


def measure(ctx: ReleaseContext, version: str = "", since: str = "") -> list[VersionDrift]:
    """Each live version's drift (or `version`'s) over the runs recorded since `since`."""
    numeric, categorical, hours, alpha = settings(ctx)
    start = moment(since, "--since") if since else datetime.now(UTC) - timedelta(hours=hours)
    versions = [version] if version else live_versions(ctx)
    if not versions:
        raise UserError(f"no live version on {ctx.env}: release one first (`inv release`)")
    found = []
    for name in versions:
        names = ctx.names_of(name)
        if not models.released(ctx.store, names):
            raise UserError(f"version {name} has no released model on {ctx.env}")
        result = VersionDrift(name, start)
        result.reference = models.read_metadata(ctx.store, names).get("reference")
        runs = [
            r
            for r in prediction_runs.read(ctx.store, name)
            if r.get("inputs") and moment(r.get("recorded_at", "1970-01-01")) >= start
        ]
        summaries, result.repeated = _once(runs)
        result.runs = len(summaries)
        result.current = drift.merge(summaries)
        if result.reference is None:
            result.note = f"{name} was released without a drift reference (before drift)"
        elif result.current is None:
            result.note = f"{name} predicted nothing since {start:%Y-%m-%d %H:%M} UTC"
        else:
            result.trips = int(result.current["n"])
            family = [drift.compare(result.reference, result.current, numeric, categorical, alpha)]
            # Each cluster against the same reference: users are hashed into clusters, so
            # every cluster's trips come from the training distribution too.
            scored = []
            for cluster, summary in (result.current.get("clusters") or {}).items():
                if summary["n"] >= MIN_CLUSTER_TRIPS:
                    scored.append(cluster)
                    family.append(
                        drift.compare(result.reference, summary, numeric, categorical, alpha)
                    )
                else:
                    result.too_few[cluster] = int(summary["n"])
            overall, *by_cluster = drift.adjust(family)
            result.columns = overall
            result.clusters = dict(zip(scored, by_cluster, strict=True))
        found.append(result)
    return found


def calls(found: list[VersionDrift]) -> list[dict[str, Any]]:
    """Every call, for scripts and alerts (`inv drift --json`)."""
    out = []
    for result in found:
        groups = [("all", result.columns)]
        groups += sorted(result.clusters.items(), key=lambda item: int(item[0]))
        for group, columns in groups:
            for c in columns:
                out.append({
                    "version": result.version, "group": group, "column": c.column,
                    "statistic": c.statistic, "distance": round(c.score, 6),
                    "threshold": c.threshold, "p_value": c.p_value,
                    "adjusted_p_value": c.adjusted, "drift": c.drifted, "trips": c.trips,
                })  # fmt: skip
        for group, trips in sorted(result.too_few.items(), key=lambda item: int(item[0])):
            out.append({"version": result.version, "group": group, "column": None,
                        "drift": None, "trips": trips,
                        "note": f"too few trips ({trips} of {MIN_CLUSTER_TRIPS})"})  # fmt: skip
    return out


def _since(result: VersionDrift) -> str:
    return f"since {result.since:%Y-%m-%d %H:%M} UTC"


def lines(found: list[VersionDrift]) -> list[str]:
    """What `inv drift` prints: a line per version, then its clusters."""
    out = []
    for result in found:
        if result.note:
            out.append(result.note)
            continue
        drifted = ", ".join(result.drifted) or "none"
        repeated = f" ({result.repeated} repeated left out)" if result.repeated else ""
        out.append(
            f"{result.version}: {result.trips:,} trips in {result.runs} "
            f"run{'s' if result.runs != 1 else ''}{repeated} {_since(result)}; "
            f"drifted: {drifted}"
        )
        out.append(f"  {by_cluster(result)}")
    return out


def by_cluster(result: VersionDrift) -> str:
    """One line: how many user clusters were scored, and which drifted."""
    drifted = [k for k, columns in result.clusters.items() if any(c.drifted for c in columns)]
    if not result.clusters:
        return f"by user cluster: none has {MIN_CLUSTER_TRIPS} trips to score yet"
    scored = f"{len(result.clusters)} clusters scored, at least {MIN_CLUSTER_TRIPS} trips each"
    named = ", ".join(sorted(drifted, key=int))
    return f"by user cluster: {'drifted: ' + named if drifted else 'none drifted'} ({scored})"


def cluster_rows(result: VersionDrift) -> list[dict[str, str]]:
    """The per-cluster table: trips, the columns that drifted, their distances and
    adjusted p-values; a cluster with too few trips says so."""
    rows = []
    for cluster, columns in sorted(result.clusters.items(), key=lambda item: int(item[0])):
        moved = [c for c in columns if c.drifted]
        rows.append({
            "cluster": cluster, "trips": f"{columns[0].trips:,}" if columns else "0",
            "drifted": ", ".join(c.column for c in moved) or "none",
            "distance": ", ".join(f"{c.score:.3f}" for c in moved) or "-",
            "adjusted p": ", ".join(_p(c.adjusted) for c in moved) or "-",
        })  # fmt: skip
    for cluster, trips in sorted(result.too_few.items(), key=lambda item: int(item[0])):
        rows.append({"cluster": cluster, "trips": f"{trips:,}",
                     "drifted": f"too few trips ({trips} of {MIN_CLUSTER_TRIPS})",
                     "distance": "-", "adjusted p": "-"})  # fmt: skip
    return sorted(rows, key=lambda row: int(row["cluster"]))


def _p(value: float | None) -> str:
    if value is None:
        return "-"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


CLUSTER_COLUMNS = ("cluster", "trips", "drifted", "distance", "adjusted p")


def show(found: list[VersionDrift]) -> None:
    for line in lines(found):
        print(line)
    rows = [
        {
            "version": r.version,
            "column": c.column,
            "statistic": c.statistic,
            "distance": f"{c.score:.3f}",
            "threshold": f"{c.threshold:g}",
            "adjusted p": _p(c.adjusted if c.adjusted is not None else c.p_value),
            "drift": "DRIFT" if c.drifted else "-",
        }
        for r in found
        for c in r.columns
    ]
    if rows:
        columns = ("version", "column", "statistic", "distance", "threshold", "adjusted p",
                   "drift")  # fmt: skip
        tables.show(columns, rows, title="drift against each version's training data")
    for result in found:
        if result.clusters or result.too_few:
            tables.show(CLUSTER_COLUMNS, cluster_rows(result),
                        title=f"{result.version} by user cluster")  # fmt: skip


def render(found: list[VersionDrift], project: str) -> str:
    """A self-contained page: per version, its calls, the clusters' table, and per column
    the score and both distributions."""
    from {{ cookiecutter.package }}.reports.html import STYLE, table

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(project)}: drift</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(project)}: drift against the training data</h1>",
        "<p>Each version's trips <em>since</em> the time shown (the batch and online runs "
        "recorded from then on, each set of trips once) against its training trips. A column "
        "drifted when its move is beyond noise (a chi-square test, Holm-adjusted over every "
        "column of the version and its clusters) and beyond its distance threshold.</p>",
    ]
    for result in found:
        parts.append(f"<h2>{escape(result.version)}</h2>")
        if result.note:
            parts.append(f"<p>{escape(result.note)}</p>")
            continue
        parts.append(f"<p>{escape(lines([result])[0])}</p>")
        if result.clusters or result.too_few:
            rows = [tuple(row.values()) for row in cluster_rows(result)]
            parts.append(f"<h3>by user cluster</h3>{table(CLUSTER_COLUMNS, rows)}")
        if result.reference is None or result.current is None:
            continue
        for column in result.columns:
            verdict = "drift" if column.drifted else "no drift"
            parts.append(
                f"<h3>{escape(column.column)}: {column.statistic} {column.score:.3f} "
                f"(threshold {column.threshold:g}; adjusted p "
                f"{_p(column.adjusted if column.adjusted is not None else column.p_value)}; "
                f"{verdict})</h3>"
            )
            plot = f"plot-{result.version}-{column.column}".replace(".", "-")
            label = LABELS.get(column.column, column.column)
            title = f"{column.column} of {result.version}: training and {_since(result)}"
            since = "since"  # the title says since when
            if column.kind == "categorical":
                parts.append(
                    charts.share_bars(
                        plot,
                        title,
                        label,
                        [
                            ("training", result.reference["categorical"][column.column]),
                            (since, result.current["categorical"][column.column]),
                        ],
                    )
                )
            else:
                parts.append(
                    charts.quantile_curves(
                        plot,
                        title,
                        label,
                        [
                            ("training", result.reference["numeric"][column.column]["quantiles"]),
                            (since, result.current["numeric"][column.column]["quantiles"]),
                        ],
                    )
                )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write(path: Path, found: list[VersionDrift], project: str) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(found, project))
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror or error}") from None
    return path.resolve()
