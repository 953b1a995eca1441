"""Drift without outcomes: how far what a version is asked to predict has moved from what it
was trained on, per input and for its predictions.

A summary describes a set of trips without keeping them (a few KB whatever their number):
for each numeric column its 101 quantiles (0, 1, ..., 100 %), mean and standard deviation;
for each categorical one its counts. The release stores the training features' summary,
and their predictions on the held-out split, with the model (`reference`); each batch
inference run stores the summary of the trips it predicted in its run record. Summaries
merge (`merge`), so a day of runs is one summary.

The statistics are Evidently's defaults for tabular data (its DataDriftPreset), with its
thresholds as the defaults of `conf/config.yaml`'s `drift`:
- numeric columns: the Wasserstein (earth mover's) distance between the two distributions,
  normalised by the reference's standard deviation, from their quantile functions
  (W1 = integral over p of |Q_ref(p) - Q_cur(p)|); drift at 0.1;
- categorical columns: the Jensen-Shannon distance between the two category shares
  (natural logarithm, as scipy's `jensenshannon` and Evidently compute it); drift at 0.1.

The inputs are the trip's own fields, recovered from the model's features: `distance_km`
(numeric), `pickup_hour`, `area_cluster` and `is_weekend` (categorical); a derived feature
(`log_distance`) would only report the same move twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from {{ cookiecutter.package }}.ml.data import N_AREAS

PERCENTS = np.linspace(0.0, 1.0, 101)
NUMERIC = ("distance_km",)
CATEGORICAL = ("pickup_hour", "area_cluster", "is_weekend")
PREDICTION = "eta_minutes"


def inputs_of(features: Any) -> dict[str, np.ndarray]:
    """The trips' own fields from a feature frame (`ml.features.build_features`)."""
    hour = np.arctan2(features["hour_sin"].to_numpy(), features["hour_cos"].to_numpy())
    areas = features[[f"area_{i}" for i in range(N_AREAS)]].to_numpy()
    return {
        "distance_km": features["distance_km"].to_numpy(dtype=float),
        "pickup_hour": np.rint(hour * 24 / (2 * np.pi)).astype(int) % 24,
        "area_cluster": areas.argmax(axis=1),
        "is_weekend": features["is_weekend"].to_numpy().astype(int),
    }


def inputs_of_trips(trips: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """The same fields from trips as requests carry them (the router's shadow records)."""
    return {
        "distance_km": np.array([t["distance_km"] for t in trips], dtype=float),
        "pickup_hour": np.array([t["pickup_hour"] for t in trips], dtype=int),
        "area_cluster": np.array([t["area_cluster"] for t in trips], dtype=int),
        "is_weekend": (np.array([t["weekday"] for t in trips]) >= 5).astype(int),
    }


def summarize(
    features: Any, etas: np.ndarray | None = None, by_cluster: bool = False
) -> dict[str, Any]:
    """The summary of a feature frame's trips, and of their predictions when given; with
    `by_cluster`, also one per user cluster (`clusters`)."""
    clusters = features["user_cluster"].to_numpy() if by_cluster else None
    return summarize_fields(inputs_of(features), etas, clusters)


def summarize_fields(
    fields: dict[str, np.ndarray], etas: np.ndarray | None, clusters: np.ndarray | None = None
) -> dict[str, Any]:
    """The summary of trips' fields (`inputs_of`, `inputs_of_trips`) and predictions; given
    each trip's user cluster, also one summary per cluster."""
    summary = _summary(fields, etas)
    if clusters is not None and len(clusters):
        summary["clusters"] = {
            str(cluster): _summary(
                {name: values[clusters == cluster] for name, values in fields.items()},
                None if etas is None else np.asarray(etas)[clusters == cluster],
            )
            for cluster in np.unique(clusters)
        }
    return summary


def _summary(fields: dict[str, np.ndarray], etas: np.ndarray | None) -> dict[str, Any]:
    numeric = {name: _numeric(fields[name]) for name in NUMERIC}
    if etas is not None and len(etas):
        numeric[PREDICTION] = _numeric(np.asarray(etas, dtype=float))
    categorical = {}
    for name in CATEGORICAL:
        values, counts = np.unique(fields[name], return_counts=True)
        categorical[name] = {str(v): int(c) for v, c in zip(values, counts, strict=True)}
    n = len(next(iter(fields.values())))
    return {"n": n, "numeric": numeric, "categorical": categorical}


def _numeric(values: np.ndarray) -> dict[str, Any]:
    return {
        "quantiles": np.quantile(values, PERCENTS).round(6).tolist(),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "n": len(values),
    }


def merge(summaries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """One summary of several (a run's parts, a day's runs); None for none. Quantiles merge
    through the mixture of the parts' distribution functions, weighted by their trips."""
    found = [s for s in summaries if s and s.get("n")]
    if not found:
        return None
    if len(found) == 1:
        return found[0]  # (also a cluster's summary: merged one by one below)
    numeric = {}
    for name in {n for s in found for n in s["numeric"]}:
        parts = [s["numeric"][name] for s in found if name in s["numeric"]]
        # The mixture's distribution function, each part's read from its quantiles (linear
        # between them), on every point any part has; its quantiles read back from it.
        points = np.unique(np.concatenate([p["quantiles"] for p in parts]))
        shares = sum(p["n"] * np.interp(points, p["quantiles"], PERCENTS) for p in parts)
        cumulative = np.asarray(shares) / sum(p["n"] for p in parts)
        n = sum(p["n"] for p in parts)
        mean = sum(p["mean"] * p["n"] for p in parts) / n
        second = sum((p["std"] ** 2 + p["mean"] ** 2) * p["n"] for p in parts) / n
        numeric[name] = {
            "quantiles": np.interp(PERCENTS, cumulative, points).round(6).tolist(),
            "mean": mean,
            "std": float(np.sqrt(max(second - mean**2, 0.0))),
            "n": n,
        }
    categorical: dict[str, dict[str, int]] = {}
    for summary in found:
        for name, counts in summary["categorical"].items():
            into = categorical.setdefault(name, {})
            for key, count in counts.items():
                into[key] = into.get(key, 0) + int(count)
    merged: dict[str, Any] = {
        "n": sum(s["n"] for s in found),
        "numeric": numeric,
        "categorical": categorical,
    }
    keys = sorted({k for s in found for k in s.get("clusters", {})}, key=int)
    if keys:
        merged["clusters"] = {
            k: merge([s["clusters"][k] for s in found if k in s.get("clusters", {})]) for k in keys
        }
    return merged


def wasserstein_normed(reference: dict[str, Any], current: dict[str, Any]) -> float:
    """W1 between two numeric summaries, over the reference's standard deviation."""
    gap = np.abs(np.asarray(reference["quantiles"]) - np.asarray(current["quantiles"]))
    distance = float(np.trapezoid(gap, PERCENTS))
    return distance / reference["std"] if reference["std"] > 0 else float(distance > 0)


def jensen_shannon(reference: dict[str, int], current: dict[str, int]) -> float:
    """The Jensen-Shannon distance (natural log) between two categorical summaries."""
    keys = sorted(set(reference) | set(current))
    p = np.array([reference.get(k, 0) for k in keys], dtype=float)
    q = np.array([current.get(k, 0) for k in keys], dtype=float)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log(a[mask] / m[mask])))

    return float(np.sqrt(max((kl(p) + kl(q)) / 2, 0.0)))


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    kind: str  # numeric | categorical | prediction
    statistic: str
    score: float
    threshold: float

    @property
    def drifted(self) -> bool:
        return self.score >= self.threshold


def compare(
    reference: dict[str, Any],
    current: dict[str, Any],
    numeric_threshold: float = 0.1,
    categorical_threshold: float = 0.1,
) -> list[ColumnDrift]:
    """Each input column's drift, then the predictions'."""
    found = []
    for name, ref in reference["numeric"].items():
        if name in current["numeric"]:
            kind = "prediction" if name == PREDICTION else "numeric"
            score = wasserstein_normed(ref, current["numeric"][name])
            found.append(ColumnDrift(name, kind, "wasserstein_normed", score, numeric_threshold))
    for name, ref_counts in reference["categorical"].items():
        if name in current["categorical"]:
            score = jensen_shannon(ref_counts, current["categorical"][name])
            found.append(
                ColumnDrift(name, "categorical", "jensen_shannon", score, categorical_threshold)
            )
    return sorted(found, key=lambda c: (c.kind == "prediction", c.column))
