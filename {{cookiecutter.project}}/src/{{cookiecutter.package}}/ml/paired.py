"""Is one version's ETA closer to what happened than another's, on the same trips?

The statistic is a **paired t-test on the per-trip difference of absolute errors**:
for each trip both versions predicted and whose actual duration is known,
`d = |candidate - actual| - |control - actual|` (negative: the candidate was closer).
Pairing removes the trips' own difficulty from the comparison, so far fewer trips decide
than comparing two MAEs measured on different trips. The mean of `d` is the difference of
the two MAEs; its confidence interval is Student's t interval, `mean +/- t * sd / sqrt(n)`.

The verdict, with the gate's margin `m` (differences within `m` minutes do not matter):
- `better`: the whole interval is below 0: the candidate's errors are smaller;
- `worse`: the whole interval is above `m`: larger by more than the margin;
- `equivalent`: the interval lies within (-m, m): whatever the difference, it does not matter;
- `inconclusive`: fewer outcomes than the gate's minimum, or the interval reaches across a
  margin: more outcomes will tell.

Everything here works on sufficient statistics (counts and sums per user cluster), so the
same verdict comes from a pandas join or from one BigQuery aggregation, and clusters add
up to the whole exactly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

VERDICTS = ("better", "worse", "equivalent", "inconclusive")
# What passes a promotion gate: not worse than the margin, with confidence.
PASSING = ("better", "equivalent")


@dataclass(frozen=True)
class Gates:
    """`release.gates`: when a verdict may be given, and what does not matter."""

    min_outcomes: int = 200
    margin_minutes: float = 0.05
    confidence: float = 0.95

    @classmethod
    def of(cls, config: Any) -> Gates:
        return cls(
            min_outcomes=int(config.min_outcomes),
            margin_minutes=float(config.margin_minutes),
            confidence=float(config.confidence),
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
    """The paired comparison of a candidate with a control, on one scope of trips."""

    candidate: str
    control: str
    sums: PairedSums
    gates: Gates

    @property
    def n(self) -> int:
        return self.sums.n

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
    def half_width(self) -> float:
        n = self.n
        if n < 2:
            return math.inf
        variance = max(self.sums.d2 - n * self.difference**2, 0.0) / (n - 1)
        from scipy.stats import t

        quantile = float(t.ppf((1 + self.gates.confidence) / 2, n - 1))
        return quantile * math.sqrt(variance / n)

    @property
    def interval(self) -> tuple[float, float]:
        return self.difference - self.half_width, self.difference + self.half_width

    @property
    def verdict(self) -> str:
        if self.n < max(self.gates.min_outcomes, 2):
            return "inconclusive"
        low, high = self.interval
        margin = self.gates.margin_minutes
        if high < 0:
            return "better"
        if low > margin:
            return "worse"
        if -margin < low and high < margin:
            return "equivalent"
        return "inconclusive"

    @property
    def passes(self) -> bool:
        return self.verdict in PASSING

    def more_outcomes_needed(self) -> int | None:
        """About how many more paired outcomes an inconclusive verdict needs: up to the
        gate's minimum, then the n at which the interval, at the difference and spread seen
        so far, clears the boundary of the nearest verdict it can reach (below 0: better,
        above the margin: worse, inside the margins: equivalent); 0 when a verdict is given.
        None when no estimate can be made: the difference sits on a boundary (up to
        rounding), or the estimate is over 100 times the outcomes seen."""
        if self.n < self.gates.min_outcomes:
            return self.gates.min_outcomes - self.n
        if self.verdict != "inconclusive":
            return 0
        margin, difference = self.gates.margin_minutes, self.difference
        reachable = [
            -difference if difference < 0 else 0.0,  # better: the interval below 0
            difference - margin,  # worse: above the margin
            margin - abs(difference),  # equivalent: inside (-margin, margin)
        ]
        gap = max(reachable)
        # A gap of a rounding error (a difference that is exactly a margin, summed in
        # floating point) would give a number of outcomes with 30 digits.
        if gap <= 1e-9 * max(margin, abs(difference), 1e-12) or not math.isfinite(self.half_width):
            return None
        needed = math.ceil(self.n * (self.half_width / gap) ** 2)
        return max(needed - self.n, 1) if needed <= 100 * self.n else None

    def summary(self) -> str:
        """One line with the numbers: what a refusal and the history show."""
        low, high = self.interval
        text = (
            f"{self.candidate} vs {self.control}: n={self.n}, MAE {self.mae_candidate:.3f} vs "
            f"{self.mae_control:.3f}, difference {self.difference:+.3f} min "
            f"[{low:+.3f}, {high:+.3f}] ({self.gates.confidence:.0%}), {self.verdict}"
        )
        return f"{text}{self.outcomes_needed_text(', ')}"

    def outcomes_needed_text(self, lead: str = "") -> str:
        """`about 44 more outcomes needed` ('' when a verdict is given)."""
        more = self.more_outcomes_needed()
        if more == 0:
            return ""
        if more is None:
            return f"{lead}more outcomes needed (no estimate at this difference)"
        return f"{lead}about {more} more outcomes needed"

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
