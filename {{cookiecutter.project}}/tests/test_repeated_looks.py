"""Verdicts checked at every tick: error rates under repeated looks, on simulated outcomes.

Each simulated experiment is a sequence of looks (a scheduled tick each): paired outcomes
arrive, the guard and the gate judge them, again and again. The truth is known by
construction: an A/A pair (two versions equally good, different trip by trip), a clearly
worse candidate and a better one. The rates measured here are the ones the README quotes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from {{ cookiecutter.package }}.ml.paired import Gates, PairedSums, Verdict, holm, overall

SEQUENCES = 500
LOOKS = 20
PER_LOOK = 250  # paired outcomes per tick
SHARES = np.array([0.25, 0.2, 0.15, 0.12, 0.1, 0.08, 0.06, 0.04])  # clusters of unequal size
GATES = Gates()


def a_a_differences(rng: np.random.Generator, size: tuple[int, ...]) -> np.ndarray:
    """Per-trip differences of absolute errors of two equally good versions: errors of 2 min
    spread, correlated 0.6 (the same trips are hard for both), mean difference 0."""
    control = rng.normal(0, 2.0, size)
    candidate = 0.6 * control + 0.8 * rng.normal(0, 2.0, size)
    return np.abs(candidate) - np.abs(control)


def cluster_sums(d: np.ndarray) -> list[list[dict[int, PairedSums]]]:
    """Cumulative sums per look and cluster; `d`: sequences x looks x PER_LOOK."""
    bounds = np.concatenate([[0], np.cumsum(np.round(SHARES * PER_LOOK).astype(int))])
    per_look = [
        [(d[:, :, lo:hi].sum(axis=2), (d[:, :, lo:hi] ** 2).sum(axis=2)) for lo, hi in zip(
            bounds[:-1], bounds[1:], strict=True)]
    ]  # fmt: skip
    sums = []
    for s in range(d.shape[0]):
        looks = []
        for look in range(LOOKS):
            looks.append(
                {
                    c: PairedSums(
                        n=int((bounds[c + 1] - bounds[c]) * (look + 1)),
                        d=float(per_look[0][c][0][s, : look + 1].sum()),
                        d2=float(per_look[0][c][1][s, : look + 1].sum()),
                    )
                    for c in range(len(SHARES))
                }
            )
        sums.append(looks)
    return sums


def fixed_horizon(sums: PairedSums, gates: Gates) -> str:
    """The verdict the project gave before: Student's t interval at every look."""
    from scipy.stats import t

    if sums.n < gates.min_outcomes:
        return "inconclusive"
    mean = sums.d / sums.n
    sd = math.sqrt(max(sums.d2 - sums.n * mean**2, 0) / (sums.n - 1))
    half = float(t.ppf((1 + gates.confidence) / 2, sums.n - 1)) * sd / math.sqrt(sums.n)
    if mean + half < -gates.margin_minutes:
        return "better"
    if mean - half > gates.margin_minutes:
        return "worse"
    return "other"


@pytest.fixture(scope="module")
def a_a_runs() -> list[list[dict[int, PairedSums]]]:
    rng = np.random.default_rng(2026)
    return cluster_sums(a_a_differences(rng, (SEQUENCES, LOOKS, PER_LOOK)))


def test_a_a_under_twenty_looks_rarely_rolls_back_or_calls_a_cluster(a_a_runs) -> None:
    """A/A: 500 sequences, 20 looks each, the guard deciding at every look. A rollback
    (overall `worse`) in at most 5% of sequences; any cluster `better` or `worse` (Holm) in
    at most 5%."""
    rolled_back = called_a_cluster = 0
    for looks in a_a_runs:
        worse_overall = any_cluster = False
        for by_cluster in looks:
            verdict = Verdict("b", "a", overall(by_cluster), GATES)
            worse_overall |= verdict.verdict == "worse"
            clusters = holm({c: Verdict("b", "a", s, GATES) for c, s in by_cluster.items()})
            any_cluster |= any(v.verdict in ("better", "worse") for v in clusters.values())
        rolled_back += worse_overall
        called_a_cluster += any_cluster
    print(f"A/A: rollback in {rolled_back}/{SEQUENCES}, a cluster called in "
          f"{called_a_cluster}/{SEQUENCES}")  # fmt: skip
    assert rolled_back <= 0.05 * SEQUENCES
    assert called_a_cluster <= 0.05 * SEQUENCES


def test_the_same_looks_with_a_fixed_horizon_interval_call_clusters_too_often(a_a_runs) -> None:
    """The check above can fail: Student's t interval, unadjusted, read at every look (what
    `inv ab` did before), calls some cluster of the same A/A sequences far more often."""
    called = sum(
        any(fixed_horizon(s, GATES) in ("better", "worse") for by in looks for s in by.values())
        for looks in a_a_runs
    )
    print(f"fixed-horizon t, unadjusted: a cluster called in {called}/{SEQUENCES}")
    assert called > 0.10 * SEQUENCES


def test_three_minutes_worse_is_worse_at_the_first_look_with_200_outcomes() -> None:
    rng = np.random.default_rng(7)
    called = 0
    for _ in range(100):
        control = rng.normal(0, 2.0, 200)
        candidate = 0.6 * control + 0.8 * rng.normal(0, 2.0, 200) + 3.0
        d = np.abs(candidate) - np.abs(control)
        verdict = Verdict("b", "a", PairedSums(200, float(d.sum()), float((d * d).sum())), GATES)
        called += verdict.verdict == "worse"
    assert called == 100


def looks_to_better(rng: np.random.Generator, sequences: int, step: int, looks: int) -> np.ndarray:
    """The look (in outcomes) at which each sequence with a true difference of -0.2 min
    (sd 1) first reads `better` with margin 0.05; inf when it never does."""
    d = rng.normal(-0.2, 1.0, (sequences, step * looks))
    first = np.full(sequences, np.inf)
    for look in range(1, looks + 1):
        n = look * step
        total, squares = d[:, :n].sum(axis=1), (d[:, :n] ** 2).sum(axis=1)
        for s in np.flatnonzero(np.isinf(first)):
            sums = PairedSums(n, float(total[s]), float(squares[s]))
            if Verdict("b", "a", sums, GATES).verdict == "better":
                first[s] = n
    return first


def test_a_better_version_is_found_at_a_bounded_cost_over_a_fixed_horizon() -> None:
    """Always-valid bounds cost outcomes: the look by which 90% of sequences read `better`
    against the n at which the fixed-horizon test the project used before (`better` when
    the 95% t interval is below -margin) has 90% power, (z_0.975 + z_0.9)^2 sd^2 / gap^2."""
    from scipy.stats import norm

    first = looks_to_better(np.random.default_rng(11), 400, 25, 80)  # a look every 25
    sequential = float(np.quantile(first, 0.9))
    fixed = ((norm.ppf(0.975) + norm.ppf(0.9)) * 1.0 / 0.15) ** 2
    print(f"90% read better by n={sequential:.0f}; fixed horizon n={fixed:.0f}: "
          f"{sequential / fixed:.2f}x; mean n to better {np.mean(first):.0f}")  # fmt: skip
    assert np.isfinite(first).all()  # every sequence gets there within 2,000 outcomes
    assert sequential / fixed <= 1.5
