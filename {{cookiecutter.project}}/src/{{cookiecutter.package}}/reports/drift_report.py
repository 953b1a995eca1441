"""`inv drift`: each live version's inputs and predictions since a moment, against what it
was trained on (`ml.drift`), before any outcome arrives.

The reference is the one the release stored with the model (`reference` in its metadata);
what the version was asked to predict is the merged summary of its batch inference runs
recorded since `--since` (`inputs` in each run record). Both are summaries, never trips:
a month of runs is read in the time it takes to read their records.
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

    @property
    def drifted(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]


def settings(ctx: ReleaseContext) -> tuple[float, float, float]:
    found = ctx.cfg.get("drift") or {}
    try:
        return (
            float(found.get("numeric_threshold", 0.1)),
            float(found.get("categorical_threshold", 0.1)),
            float(found.get("since_hours", 24)),
        )
    except (TypeError, ValueError) as error:
        raise UserError(f"drift: {error}") from None


def measure(ctx: ReleaseContext, version: str = "", since: str = "") -> list[VersionDrift]:
    """Each live version's drift (or `version`'s) over the runs recorded since `since`."""
    numeric, categorical, hours = settings(ctx)
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
        result.runs = len(runs)
        result.current = drift.merge([r["inputs"] for r in runs])
        if result.reference is None:
            result.note = f"{name} was released without a drift reference (before drift)"
        elif result.current is None:
            result.note = f"{name} predicted nothing since {start:%Y-%m-%d %H:%M} UTC"
        else:
            result.trips = int(result.current["n"])
            result.columns = drift.compare(result.reference, result.current, numeric, categorical)
            # Each cluster against the same reference: users are hashed into clusters, so
            # every cluster's trips come from the training distribution too.
            for cluster, summary in (result.current.get("clusters") or {}).items():
                if summary["n"] >= MIN_CLUSTER_TRIPS:
                    result.clusters[cluster] = drift.compare(
                        result.reference, summary, numeric, categorical
                    )
        found.append(result)
    return found


def lines(found: list[VersionDrift]) -> list[str]:
    """What `inv drift` prints: a line per version, then its columns."""
    out = []
    for result in found:
        if result.note:
            out.append(result.note)
            continue
        drifted = ", ".join(result.drifted) or "none"
        out.append(
            f"{result.version}: {result.trips:,} trips in {result.runs} "
            f"run{'s' if result.runs != 1 else ''} since "
            f"{result.since:%Y-%m-%d %H:%M} UTC; drifted: {drifted}"
        )
        out.append(f"  {by_cluster(result)}")
    return out


def by_cluster(result: VersionDrift) -> str:
    """One line: which user clusters drifted, on which columns."""
    drifted = {
        cluster: [c.column for c in columns if c.drifted]
        for cluster, columns in sorted(result.clusters.items(), key=lambda item: int(item[0]))
    }
    named = [f"{k} ({', '.join(v)})" for k, v in drifted.items() if v]
    if not drifted:
        return f"by user cluster: none has {MIN_CLUSTER_TRIPS} trips to score yet"
    scored = f"{len(drifted)} clusters scored, at least {MIN_CLUSTER_TRIPS} trips each"
    return (
        f"by user cluster: {'drifted ' + '; '.join(named) if named else 'none drifted'} ({scored})"
    )


def show(found: list[VersionDrift]) -> None:
    for line in lines(found):
        print(line)
    rows = [
        {
            "version": r.version,
            "column": c.column,
            "kind": c.kind,
            "statistic": c.statistic,
            "score": f"{c.score:.3f}",
            "threshold": f"{c.threshold:g}",
            "drift": "DRIFT" if c.drifted else "-",
        }
        for r in found
        for c in r.columns
    ]
    if rows:
        columns = ("version", "column", "kind", "statistic", "score", "threshold", "drift")
        tables.show(columns, rows, title="drift against each version's training data")


def render(found: list[VersionDrift], project: str) -> str:
    """A self-contained page: per version and column, the score and both distributions."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(project)}: drift</title></head><body>",
        f"<h1>{escape(project)}: drift against the training data</h1>",
    ]
    for result in found:
        parts.append(f"<h2>{escape(result.version)}</h2>")
        if result.note:
            parts.append(f"<p>{escape(result.note)}</p>")
            continue
        parts.append(f"<p>{escape(lines([result])[0])}<br>{escape(by_cluster(result))}</p>")
        if result.reference is None or result.current is None:
            continue
        for column in result.columns:
            verdict = "drift" if column.drifted else "no drift"
            parts.append(
                f"<h3>{escape(column.column)}: {column.statistic} {column.score:.3f} "
                f"(threshold {column.threshold:g}, {verdict})</h3>"
            )
            plot = f"plot-{result.version}-{column.column}".replace(".", "-")
            label = LABELS.get(column.column, column.column)
            title = f"{column.column} of {result.version}: training and since"
            if column.kind == "categorical":
                parts.append(
                    charts.share_bars(
                        plot,
                        title,
                        label,
                        [
                            ("training", result.reference["categorical"][column.column]),
                            ("since", result.current["categorical"][column.column]),
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
                            ("since", result.current["numeric"][column.column]["quantiles"]),
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
