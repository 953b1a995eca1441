"""Is one version's ETA closer to what happened than another's, on the same trips?

The data: for each trip both versions predicted and whose actual duration is known,
`d = |candidate - actual| - |control - actual|` (negative: the candidate was closer). Pairing
removes the trips' own difficulty from the comparison, so far fewer trips decide than
comparing two MAEs measured on different trips. The mean of `d` is the difference of the two
MAEs.

**Always-valid bounds.** The guard and the promotion gate look again at every scheduled
tick; a fixed-horizon interval (Student's t) read at every look is wrong far more often than
its level says (`tests/test_repeated_looks.py` measures it). The bounds here are a
*confidence sequence*: they hold at every n at once, however often and whenever one looks.
Each bound is the one-sided normal-mixture boundary of Robbins, as in Howard, Ramdas,
McAuliffe and Sekhon (2021), "Time-uniform, nonparametric, nonasymptotic confidence
sequences", Ann. Statist. 49(2), with the variance estimated from the data as in
Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas, "Time-uniform central limit theory and
asymptotic confidence sequences" (Ann. Statist. 2024). Why this one: it needs only the
counts and sums below (so BigQuery's one query still decides), it is the mSPRT that
Optimizely's Stats Engine and Eppo use, and its one tuning constant
(`release.gates.planned_outcomes`, where the bounds are tightest) moves width, never
validity. Each bound is wrong with probability at most `1 - confidence`, at any look.

The verdict, with the gate's margin `m`, the smallest difference that matters:
- `better`: the upper bound is below `-m`: better by more than the margin;
- `worse`: the lower bound is above `m`: worse by more than the margin;
- `equivalent`: both bounds within (-m, m): whatever the difference, it does not matter
  (two one-sided tests, as equivalence trials decide; sign and size are still shown);
- `inconclusive`: fewer outcomes than the gate's minimum, or the bounds reach across a
  margin: more outcomes will tell.

**Many clusters.** The overall verdict is primary (the guard and the gate read it). Each
user cluster's `better`/`worse` is a further claim; with 8 clusters a fixed level would
give 8 chances of a wrong one. They are adjusted with Holm's step-down procedure on
always-valid p-values: it controls the chance of *any* wrong cluster verdict (the gate
refuses on a single `worse` cluster, so one wrong cluster is what costs), it is uniformly
more powerful than Bonferroni, and it needs no assumption on how the clusters depend on
each other. A false-discovery-rate control would allow some wrong cluster verdicts by design.
A cluster's claim may point either way (the data choose), so each direction gets half of
its share. Clusters Holm does not keep are shown, and judged `equivalent` or not, at the
Bonferroni share of each bound, (`1 - confidence`) / (2 x clusters).

Everything here works on sufficient statistics (counts and sums per user cluster), so the
same verdict comes from a pandas join or from one BigQuery aggregation, and clusters add
up to the whole exactly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from {{ cookiecutter.package }}.ml.confidence_sequences import anytime_p_value, boundary

if TYPE_CHECKING:
    import pandas as pd

VERDICTS = ("better", "worse", "equivalent", "inconclusive")
# What passes a promotion gate: not worse than the margin, with confidence.
PASSING = ("better", "equivalent")
INTERVAL = "always-valid"  # what `inv ab` and the evidence say the bounds are


@dataclass(frozen=True)
class Gates:
    """`release.gates`: when a verdict may be given, and what does not matter."""

    min_outcomes: int = 200
    margin_minutes: float = 0.05
    confidence: float = 0.95
    planned_outcomes: int = 500

    @classmethod
    def of(cls, config: Any) -> Gates:
        return cls(
            min_outcomes=int(config.min_outcomes),
            margin_minutes=float(config.margin_minutes),
            confidence=float(config.confidence),
            planned_outcomes=int(config.get("planned_outcomes", cls.planned_outcomes)),
        )


@dataclass(frozen=True)
class PairedSums:
    """Counts and sums over paired trips: d = |candidate error| - |control error|."""

    n: int = 0
    d: float = 0.0
    d2: float = 0.0
    ae_candidate: float = 0.0
    ae_control: float = 0.0
    error_candidate: float = 0.0  # signed (prediction - actual): the bias
    error_control: float = 0.0

    def __add__(self, other: PairedSums) -> PairedSums:
        return PairedSums(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


@dataclass(frozen=True)
class Verdict:
    """The paired comparison of a candidate with a control, on one scope of trips.

    `error`: the chance each bound may be wrong, at any look; `1 - gates.confidence` unless
    a multiplicity adjustment (`holm`) set a smaller one for a cluster.
    """

    candidate: str
    control: str
    sums: PairedSums
    gates: Gates
    error: float | None = None

    @property
    def n(self) -> int:
        return self.sums.n

    @property
    def level(self) -> float:
        return self.error if self.error is not None else 1 - self.gates.confidence

    def _mean(self, total: float) -> float:
        return total / self.n if self.n else math.nan

    @property
    def mae_candidate(self) -> float:
        return self._mean(self.sums.ae_candidate)

    @property
    def mae_control(self) -> float:
        return self._mean(self.sums.ae_control)

    @property
    def bias_candidate(self) -> float:
        return self._mean(self.sums.error_candidate)

    @property
    def bias_control(self) -> float:
        return self._mean(self.sums.error_control)

    @property
    def difference(self) -> float:
        """Mean paired difference of absolute errors: MAE(candidate) - MAE(control)."""
        return self._mean(self.sums.d)

    @property
    def sd(self) -> float:
        """Standard deviation of one trip's paired difference (nan below 2 trips)."""
        n = self.n
        if n < 2:
            return math.nan
        return math.sqrt(max(self.sums.d2 - n * self.difference**2, 0.0) / (n - 1))

    @property
    def tuning(self) -> float:
        """The error the mixture is tuned for: the gates', whatever this verdict's level."""
        return 1 - self.gates.confidence

    def _half_width(self, n: int) -> float:
        return boundary(n, self.level, self.gates.planned_outcomes, self.tuning) * self.sd

    @property
    def half_width(self) -> float:
        return self._half_width(self.n) if self.n >= 2 else math.inf

    @property
    def interval(self) -> tuple[float, float]:
        """(lower, upper): each an always-valid bound at `level`."""
        return self.difference - self.half_width, self.difference + self.half_width

    @property
    def verdict(self) -> str:
        if self.n < max(self.gates.min_outcomes, 2):
            return "inconclusive"
        low, high = self.interval
        margin = self.gates.margin_minutes
        if high < -margin:
            return "better"
        if low > margin:
            return "worse"
        if -margin < low and high < margin:
            return "equivalent"
        return "inconclusive"

    @property
    def passes(self) -> bool:
        return self.verdict in PASSING

    def claim_p_value(self) -> float:
        """The always-valid p-value of the claim the estimate points to: `better` below
        -margin, `worse` above +margin (1 when it points to neither, or below the gate's
        minimum of outcomes)."""
        margin, difference = self.gates.margin_minutes, self.difference
        if self.n < max(self.gates.min_outcomes, 2) or abs(difference) <= margin:
            return 1.0
        gap = abs(difference) - margin
        return anytime_p_value(self.n, gap, self.sd, self.gates.planned_outcomes, self.tuning)

    def more_outcomes_needed(self) -> int | None:
        """About how many more paired outcomes an inconclusive verdict needs: up to the
        gate's minimum, then, if the difference and its spread stay as seen so far, until
        the bounds clear the boundary of the nearest verdict they can reach (below -margin:
        better, above the margin: worse, inside the margins: equivalent); 0 when a verdict
        is given. None when no estimate can be made: the difference sits on a boundary (up
        to rounding), or the estimate is over 100 times the outcomes seen."""
        if self.n < self.gates.min_outcomes:
            return self.gates.min_outcomes - self.n
        if self.verdict != "inconclusive":
            return 0
        margin, difference = self.gates.margin_minutes, self.difference
        gap = max(
            -margin - difference,  # better: the upper bound below -margin
            difference - margin,  # worse: the lower bound above the margin
            margin - abs(difference),  # equivalent: both inside (-margin, margin)
        )
        # A gap of a rounding error (a difference that is exactly a margin, summed in
        # floating point) would give a number of outcomes with 30 digits.
        if gap <= 1e-9 * max(margin, abs(difference), 1e-12) or not math.isfinite(self.sd):
            return None
        limit = 100 * self.n
        if self._half_width(limit) >= gap:
            return None
        low, high = self.n, limit  # the half width shrinks as n grows: bisect for the first n
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if self._half_width(middle) >= gap else (low, middle)
        return max(high - self.n, 1)

    def bounds_label(self) -> str:
        """`always-valid, 95% each bound`: which interval the verdict used."""
        percent = f"{100 * (1 - self.level):.2f}".rstrip("0").rstrip(".")
        return f"{INTERVAL}, {percent}% each bound"

    def summary(self) -> str:
        """One line with the numbers: what a refusal and the history show."""
        low, high = self.interval
        text = (
            f"{self.candidate} vs {self.control}: n={self.n}, MAE {self.mae_candidate:.3f} vs "
            f"{self.mae_control:.3f}, difference {self.difference:+.3f} min "
            f"[{low:+.3f}, {high:+.3f}] ({self.bounds_label()}), {self.verdict}"
        )
        more = self.more_outcomes_needed()
        if more is None:
            return f"{text}, more outcomes needed (no estimate at this difference)"
        if more and self.n < self.gates.min_outcomes:
            return f"{text}, {more} more outcomes needed before any verdict"
        if more:
            assumption = "if the difference and its spread stay as seen"
            return f"{text}, about {more} more outcomes needed {assumption}"
        return text

    def evidence(self) -> dict[str, Any]:
        """What a traffic record keeps of a decision."""
        low, high = self.interval

        def number(value: float) -> float | None:
            return round(value, 4) if math.isfinite(value) else None

        return {
            "candidate": self.candidate,
            "control": self.control,
            "n": self.n,
            "mae_candidate": number(self.mae_candidate),
            "mae_control": number(self.mae_control),
            "difference": number(self.difference),
            "interval": [number(low), number(high)],
            "interval_kind": INTERVAL,
            "error_each_bound": self.level,
            "verdict": self.verdict,
            "gates": asdict(self.gates),
        }


def paired_sums(
    control: pd.DataFrame, candidate: pd.DataFrame, outcomes: pd.DataFrame
) -> dict[int, PairedSums]:
    """Per user cluster, the sums over trips predicted by both versions with an outcome.

    `control` and `candidate`: trip_id, user_cluster, eta_minutes (a trip predicted more
    than once counts once, with its latest prediction); `outcomes`: trip_id, eta_minutes.
    """
    columns = ["trip_id", "user_cluster", "eta_minutes"]
    latest = [
        frame[columns].drop_duplicates("trip_id", keep="last") for frame in (control, candidate)
    ]
    actual = outcomes[["trip_id", "eta_minutes"]].rename(columns={"eta_minutes": "actual"})
    pairs = (
        latest[0]
        .merge(latest[1][["trip_id", "eta_minutes"]], on="trip_id", suffixes=("_0", "_1"))
        .merge(actual.drop_duplicates("trip_id", keep="last"), on="trip_id")
    )
    error_control = pairs["eta_minutes_0"] - pairs["actual"]
    error_candidate = pairs["eta_minutes_1"] - pairs["actual"]
    d = error_candidate.abs() - error_control.abs()
    table = pairs[["user_cluster"]].assign(
        n=1,
        d=d,
        d2=d * d,
        ae_candidate=error_candidate.abs(),
        ae_control=error_control.abs(),
        error_candidate=error_candidate,
        error_control=error_control,
    )
    return sums_by_cluster(table.groupby("user_cluster").sum().reset_index())


def sums_by_cluster(frame: pd.DataFrame) -> dict[int, PairedSums]:
    """Rows of user_cluster and the PairedSums fields (a groupby here, or BigQuery's
    aggregation) as the sums of each cluster."""
    names = [f.name for f in fields(PairedSums)]
    return {
        int(row["user_cluster"]): PairedSums(int(row["n"]), *(float(row[n]) for n in names[1:]))
        for _, row in frame.iterrows()
    }


def overall(by_cluster: dict[int, PairedSums]) -> PairedSums:
    return sum(by_cluster.values(), PairedSums())


def holm(clusters: dict[int, Verdict]) -> dict[int, Verdict]:
    """The clusters' verdicts adjusted for their number: Holm's step-down procedure on the
    always-valid p-values of their `better`/`worse` claims, at the gates' error.

    Sorted by p-value, the j-th claim (from 0) is kept while p <= error / (k - j), with k
    the number of clusters, and halved: each claim's p-value covers the one direction its
    estimate points to, chosen from the data. The first that fails stops it. A kept claim's
    verdict is computed at its Holm level (so its bounds exclude the margin); every other
    cluster's at the Bonferroni level, error / (2k).
    """
    if not clusters:
        return {}
    k = len(clusters)
    error = next(iter(clusters.values())).level
    ranked = sorted(clusters, key=lambda c: clusters[c].claim_p_value())
    adjusted = {c: replace(v, error=error / k / 2) for c, v in clusters.items()}
    for j, cluster in enumerate(ranked):
        level = error / (k - j) / 2
        candidate = replace(clusters[cluster], error=level)
        if candidate.claim_p_value() > level or candidate.verdict not in ("better", "worse"):
            break
        adjusted[cluster] = candidate
    return adjusted
