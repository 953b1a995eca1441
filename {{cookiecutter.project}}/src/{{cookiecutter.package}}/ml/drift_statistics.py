"""The statistics of drift (`ml.drift`): the distances that size a move (Evidently's
defaults) and the test that tells a move from noise, with its multiplicity correction."""

from __future__ import annotations

from typing import Any

import numpy as np

PERCENTS = np.linspace(0.0, 1.0, 101)  # the quantiles a summary keeps (0, 1, ..., 100 %)
MIN_EXPECTED = 5.0  # a chi-square cell expected to hold fewer trips is pooled


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


def homogeneity_p(reference: list[int] | np.ndarray, current: list[int] | np.ndarray) -> float:
    """The p-value of Pearson's chi-square test of homogeneity between two sets of counts
    over the same cells (reference and current: a 2 x k table). Cells where the current
    sample is expected fewer than MIN_EXPECTED trips under homogeneity (the table's margins,
    as Cochran's rule reads them) are pooled, the smallest first."""
    from scipy.stats import chi2

    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    if ref.sum() <= 0 or cur.sum() <= 0:
        return 1.0
    expected = (ref + cur) * cur.sum() / (ref.sum() + cur.sum())
    order = np.argsort(expected, kind="stable")
    pooled, cells, held = np.zeros(len(ref), dtype=int), 0, 0.0
    for index in order:  # pool the rarest cells until the pool is expected MIN_EXPECTED
        pooled[index] = cells
        held += expected[index]
        if held >= MIN_EXPECTED:
            cells, held = cells + 1, 0.0
    if held > 0 and cells > 0:  # a last pool too small: joined to the one before it
        pooled[pooled == cells] = cells - 1
    cells = int(pooled.max()) + 1
    if cells < 2:
        return 1.0
    table = np.zeros((2, cells))
    np.add.at(table[0], pooled, ref)
    np.add.at(table[1], pooled, cur)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 1.0
    fitted = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    statistic = float(np.sum((table - fitted) ** 2 / fitted))
    return float(chi2.sf(statistic, table.shape[1] - 1))


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (the family-wise error rate stays at alpha)."""
    m = len(p_values)
    order = np.argsort(p_values, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted.tolist()
