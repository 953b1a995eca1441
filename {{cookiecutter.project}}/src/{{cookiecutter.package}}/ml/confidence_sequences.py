"""Always-valid bounds for a mean: the one-sided normal-mixture confidence sequence that the
paired verdicts (`ml.paired`) read at every look.

The bound holds at every n at once, however often and whenever one looks: the boundary of
Robbins' normal mixture, as in Howard, Ramdas, McAuliffe and Sekhon (2021), "Time-uniform,
nonparametric, nonasymptotic confidence sequences", Ann. Statist. 49(2), with the variance
estimated from the data as in Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas,
"Time-uniform central limit theory and asymptotic confidence sequences" (Ann. Statist.
2024). Its one tuning constant (the outcomes where the bound is tightest) moves width,
never validity.
"""

from __future__ import annotations

import math
from functools import lru_cache


def _phi(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2))


def _mixture_parts(n: int, planned: int, tuning: float) -> tuple[float, float]:
    """(r, scale): the mixture's precision relative to the data, r = n * rho^2, with rho
    chosen so that a bound at error `tuning` is tightest at `planned` outcomes (Waudby-Smith
    et al., rho*), and sqrt((r + 1) / (n r)), which turns the standardised statistic into
    standard deviations of one observation. Fixed by the gates, never by the data."""
    log_term = -2 * math.log(2 * tuning)
    rho2 = (log_term + math.log(log_term + 1)) / max(planned, 1)
    r = n * rho2
    return r, math.sqrt((r + 1) / (n * r))


def _log_mixture(s: float, r: float) -> float:
    """log of the one-sided normal-mixture martingale at standardised statistic s:
    2 (r + 1)^-1/2 exp(s^2 / 2) Phi(s)."""
    phi = _phi(s)
    if phi <= 0:
        return -math.inf
    return math.log(2) - 0.5 * math.log(r + 1) + s * s / 2 + math.log(phi)


@lru_cache(maxsize=65536)
def boundary(n: int, error: float, planned: int, tuning: float) -> float:
    """The one-sided always-valid bound after n observations, in standard deviations of one
    observation: the mean is below `mean + boundary * sd` at every n at once with
    probability at least 1 - error. Solves mixture(s) = 1 / error for s (Ville's inequality)."""
    r, scale = _mixture_parts(n, planned, tuning)
    target = math.log(1 / error)
    low, high = 0.0, 1.0
    while _log_mixture(high, r) < target:
        high *= 2
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if _log_mixture(middle, r) < target else (low, middle)
    return high * scale


def anytime_p_value(n: int, gap: float, sd: float, planned: int, tuning: float) -> float:
    """The always-valid p-value of a one-sided claim whose estimate is `gap` beyond its
    boundary (1 / the mixture martingale there): it falls to p or below at some look with
    probability at most p when the claim is wrong. p <= e exactly when the bound at error e
    (same tuning) excludes the boundary."""
    if n < 2 or sd <= 0:
        return 0.0 if n >= 2 and gap > 0 else 1.0
    r, scale = _mixture_parts(n, planned, tuning)
    return min(1.0, math.exp(-_log_mixture(gap / (sd * scale), r)))
