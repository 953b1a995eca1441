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

A distance alone is no decision: estimated from 250 trips, the Jensen-Shannon distance of 24
hours is about 0.12 with no drift at all. So drift is called when the move is both beyond
noise and beyond the threshold (`compare`, `call`):
- beyond noise: a chi-square test of homogeneity between the reference's counts and the
  current ones, per column: the categories' counts, or for a numeric column the counts in
  the reference's ten decile bins (the release records its edges and counts; each run
  counts its trips in the same bins, so the test is exact for any sample size that the
  chi-square approximation holds for: categories expected fewer than 5 trips are pooled);
  Evidently switches to such tests for small samples too. The two-sample form counts the
  reference's own sampling noise.
- beyond the threshold: the distance above, the size of the move shown to people.
The tests of one look at a version (every column of the version and of each user cluster
scored) are one family: Holm's step-down adjustment keeps the chance of any false alarm in
it at `alpha` (Benjamini-Hochberg would bound the share of false alarms among the calls
instead, and an alarm nobody can trust is what this must avoid).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from {{ cookiecutter.package }}.ml.data import N_AREAS
from {{ cookiecutter.package }}.ml.drift_statistics import (
    PERCENTS,
    holm,
    homogeneity_p,
    jensen_shannon,
    wasserstein_normed,
)

DECILES = np.linspace(0.1, 0.9, 9)  # the edges of a reference's ten equal-share bins
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
    features: Any,
    etas: np.ndarray | None = None,
    by_cluster: bool = False,
    reference: dict[str, Any] | None = None,
    as_reference: bool = False,
) -> dict[str, Any]:
    """The summary of a feature frame's trips, and of their predictions when given; with
    `by_cluster`, also one per user cluster (`clusters`). Given the version's `reference`,
    numeric columns are also counted in its decile bins; `as_reference` makes the summary a
    reference: its own decile edges and counts. Its trip ids' digest (`trips`) tells runs
    that predicted the same trips apart from runs that did not."""
    clusters = features["user_cluster"].to_numpy() if by_cluster else None
    summary = summarize_fields(inputs_of(features), etas, clusters, reference, as_reference)
    if "trip_id" in features:
        summary["trips"] = trips_digest(features["trip_id"])
    return summary


def trips_digest(ids: Any) -> str:
    """One digest of a set of trip ids, whatever their order (the sum of their 64-bit
    hashes): two runs of the same trips have the same."""
    from {{ cookiecutter.package }}.ml.uniqueness import id_hashes

    total = int(np.sum(id_hashes(ids), dtype=np.uint64))
    return f"{len(ids)}:{total:016x}"


def summarize_fields(
    fields: dict[str, np.ndarray],
    etas: np.ndarray | None,
    clusters: np.ndarray | None = None,
    reference: dict[str, Any] | None = None,
    as_reference: bool = False,
) -> dict[str, Any]:
    """The summary of trips' fields (`inputs_of`, `inputs_of_trips`) and predictions; given
    each trip's user cluster, also one summary per cluster."""
    edges = {
        name: column["edges"]
        for name, column in (reference or {}).get("numeric", {}).items()
        if "edges" in column
    }
    own = as_reference
    summary = _summary(fields, etas, edges, own)
    if clusters is not None and len(clusters):
        summary["clusters"] = {
            str(cluster): _summary(
                {name: values[clusters == cluster] for name, values in fields.items()},
                None if etas is None else np.asarray(etas)[clusters == cluster],
                edges,
                own,
            )
            for cluster in np.unique(clusters)
        }
    return summary


def _summary(
    fields: dict[str, np.ndarray],
    etas: np.ndarray | None,
    edges: dict[str, list[float]],
    own: bool,
) -> dict[str, Any]:
    values = {name: fields[name] for name in NUMERIC}
    if etas is not None and len(etas):
        values[PREDICTION] = np.asarray(etas, dtype=float)
    numeric = {name: _numeric(v, edges.get(name), own) for name, v in values.items()}
    categorical = {}
    for name in CATEGORICAL:
        found, counts = np.unique(fields[name], return_counts=True)
        categorical[name] = {str(v): int(c) for v, c in zip(found, counts, strict=True)}
    n = len(next(iter(fields.values())))
    return {"n": n, "numeric": numeric, "categorical": categorical}


def _numeric(values: np.ndarray, edges: list[float] | None, own: bool) -> dict[str, Any]:
    found: dict[str, Any] = {
        "quantiles": np.quantile(values, PERCENTS).round(6).tolist() if len(values) else [],
        "mean": float(values.mean()) if len(values) else 0.0,
        "std": float(values.std()) if len(values) else 0.0,
        "n": len(values),
    }
    if own and len(values):
        edges = np.quantile(values, DECILES).tolist()
        found["edges"] = edges
    if edges is not None:
        bins = np.searchsorted(np.asarray(edges), values, side="right")
        found["bins"] = np.bincount(bins, minlength=len(edges) + 1).tolist()
    return found


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
        if all("bins" in p for p in parts):  # counts in the same reference's bins add up
            numeric[name]["bins"] = np.sum([p["bins"] for p in parts], axis=0).tolist()
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
    if all("trips" in s for s in found):  # the parts of one run: disjoint trips
        counts, sums = zip(*(s["trips"].split(":") for s in found), strict=True)
        total = sum(int(x, 16) for x in sums) % 2**64
        merged["trips"] = f"{sum(int(c) for c in counts)}:{total:016x}"
    keys = sorted({k for s in found for k in s.get("clusters", {})}, key=int)
    if keys:
        merged["clusters"] = {
            k: merge([s["clusters"][k] for s in found if k in s.get("clusters", {})]) for k in keys
        }
    return merged


@dataclass(frozen=True)
class ColumnDrift:
    """One column's call: its distance (`score`, the size of the move), the p-value of the
    homogeneity test (None for a version released before the reference kept its bins: the
    distance alone decides then, as it used to) and the family's Holm-adjusted one."""

    column: str
    kind: str  # numeric | categorical | prediction
    statistic: str
    score: float
    threshold: float
    p_value: float | None = None
    adjusted: float | None = None
    alpha: float = 0.05
    trips: int = 0

    @property
    def drifted(self) -> bool:
        p = self.adjusted if self.adjusted is not None else self.p_value
        beyond_noise = p is None or p < self.alpha  # None: released before the test's bins
        return self.score >= self.threshold and beyond_noise


def compare(
    reference: dict[str, Any],
    current: dict[str, Any],
    numeric_threshold: float = 0.1,
    categorical_threshold: float = 0.1,
    alpha: float = 0.05,
) -> list[ColumnDrift]:
    """Each input column's drift, then the predictions' (p-values not yet adjusted: see
    `adjust`)."""
    found = []
    for name, ref in reference["numeric"].items():
        if name in current["numeric"] and current["numeric"][name]["n"]:
            now = current["numeric"][name]
            kind = "prediction" if name == PREDICTION else "numeric"
            score = wasserstein_normed(ref, now)
            p = homogeneity_p(ref["bins"], now["bins"]) if "bins" in ref and "bins" in now else None
            found.append(ColumnDrift(name, kind, "wasserstein_normed", score, numeric_threshold,
                                     p, None, alpha, int(now["n"])))  # fmt: skip
    for name, ref_counts in reference["categorical"].items():
        if name in current["categorical"]:
            now_counts = current["categorical"][name]
            score = jensen_shannon(ref_counts, now_counts)
            keys = sorted(set(ref_counts) | set(now_counts))
            p = homogeneity_p([ref_counts.get(k, 0) for k in keys],
                              [now_counts.get(k, 0) for k in keys])  # fmt: skip
            found.append(ColumnDrift(name, "categorical", "jensen_shannon", score,
                                     categorical_threshold, p, None, alpha,
                                     sum(now_counts.values())))  # fmt: skip
    return sorted(found, key=lambda c: (c.kind == "prediction", c.column))


def adjust(family: list[list[ColumnDrift]]) -> list[list[ColumnDrift]]:
    """The same calls with Holm-adjusted p-values over the whole family (every column of
    every group scored at one look at a version)."""
    tested = [(g, i) for g, group in enumerate(family) for i, c in enumerate(group)
              if c.p_value is not None]  # fmt: skip
    adjusted = holm([family[g][i].p_value for g, i in tested])  # type: ignore[misc]
    out = [list(group) for group in family]
    for (g, i), value in zip(tested, adjusted, strict=True):
        out[g][i] = replace(out[g][i], adjusted=value)
    return out
