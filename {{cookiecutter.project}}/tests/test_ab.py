"""A/B verdicts: the paired statistic on constructed data whose truth is known, and the
decisions taken on it (`inv ab`, `--promote`, `--guard`) over real predictions files and
outcomes in a real store.

The synthetic generator gives each trip its true duration, so versions whose errors are
known can be constructed: the control predicts the truth with noise, a clearly worse
candidate adds 3 minutes to every ETA, a clearly better one has a third of the noise, an
equal one has the same noise drawn anew.
"""

from __future__ import annotations

import io
import json
import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import chart_axes, make_live, snapshot
from conftest import release_context as context

from {{ cookiecutter.package }}.artifacts import prediction_runs, traffic
from {{ cookiecutter.package }}.artifacts.data_sources import record_outcomes
from {{ cookiecutter.package }}.artifacts.intervals import Interval
from {{ cookiecutter.package }}.artifacts.names import new_run_id, synthetic_outcomes_key
from {{ cookiecutter.package }}.artifacts.predictions import ParquetPredictions
from {{ cookiecutter.package }}.errors import ReleaseError
from {{ cookiecutter.package }}.ml.data import make_trips
from {{ cookiecutter.package }}.ml.paired import Gates, PairedSums, Verdict, overall, paired_sums
from {{ cookiecutter.package }}.release import evidence, promotion
from {{ cookiecutter.package }}.release import traffic_moves as commands
from {{ cookiecutter.package }}.reports import ab as report
from {{ cookiecutter.package }}.reports import versions

NOISE = 1.5


def truth(n_trips: int, seed: int = 5) -> pd.DataFrame:
    return make_trips(n_trips, seed)


def predicted(trips: pd.DataFrame, kind: str, seed: int) -> pd.DataFrame:
    """Predictions of a version whose error is known (see the module's docstring)."""
    rng = np.random.default_rng(seed)
    actual = trips["eta_minutes"].to_numpy()
    noise = {"control": NOISE, "equal": NOISE, "better": NOISE / 3, "worse": NOISE}.get(
        kind, NOISE / 3
    )
    eta = actual + rng.normal(0, noise, len(trips)) + (3.0 if kind == "worse" else 0.0)
    if kind == "better but worse in cluster 2":  # what one user segment sees
        eta = eta + np.where(trips["user_cluster"].to_numpy() == 2, 3.0, 0.0)
    return pd.DataFrame(
        {"trip_id": trips["trip_id"], "user_cluster": trips["user_cluster"], "eta_minutes": eta}
    )


def verdict_of(kind: str, n_trips: int = 16000) -> Verdict:
    trips = truth(n_trips)
    sums = paired_sums(predicted(trips, "control", 1), predicted(trips, kind, 2), trips)
    return Verdict("2.0.0", "1.0.0", overall(sums), Gates())


@pytest.mark.parametrize(
    ("kind", "expected"), [("better", "better"), ("worse", "worse"), ("equal", "equivalent")]
)
def test_the_verdict_finds_the_constructed_truth(kind: str, expected: str) -> None:
    verdict = verdict_of(kind)
    assert verdict.verdict == expected, verdict.summary()
    assert verdict.more_outcomes_needed() == 0


def test_too_few_outcomes_are_inconclusive_and_say_how_many_more() -> None:
    verdict = verdict_of("worse", n_trips=150)
    assert verdict.n == 150 and verdict.verdict == "inconclusive"
    assert verdict.more_outcomes_needed() == 50
    assert verdict.summary().endswith("inconclusive, 50 more outcomes needed before any verdict")


def test_outcomes_needed_is_a_sane_number_or_says_there_is_none() -> None:
    """The reproduction: the difference -13.35/267 is -0.05 up to rounding. It sat on the
    margin, and the estimate was 16163532931260730395075647008407285 outcomes."""
    sums = PairedSums(
        n=267, d=-13.349999999999998, d2=267 * (0.0025 + 0.2), ae_candidate=267, ae_control=280.35
    )
    on_the_margin = Verdict("0.2.0", "0.1.0", sums, Gates())
    assert on_the_margin.verdict == "inconclusive"
    # On the margin no verdict comes nearer with more outcomes: `better` needs the upper
    # bound below -0.05, `equivalent` the lower bound above it.
    assert on_the_margin.more_outcomes_needed() is None
    assert on_the_margin.summary().endswith(
        "inconclusive, more outcomes needed (no estimate at this difference)"
    )
    assert report.row("all", on_the_margin)["verdict"] == "inconclusive (more)"

    # At -0.2 with the same spread the bound must shrink below 0.15: at the n where it does.
    def at(n: int) -> Verdict:  # a difference of -0.2 min with a spread (sd) of 1.2
        return Verdict(
            "0.2.0", "0.1.0", PairedSums(n, -0.2 * n, (n - 1) * 1.44 + n * 0.04), Gates()
        )

    needed = at(267).more_outcomes_needed()
    assert at(267).verdict == "inconclusive" and needed is not None and 0 < needed < 2000
    assert at(267 + needed).verdict == "better"
    assert at(266 + needed).verdict == "inconclusive"
    assert (
        at(267)
        .summary()
        .endswith(
            f"about {needed} more outcomes needed if the difference and its spread stay as seen"
        )
    )


def test_the_bound_is_where_the_one_sided_normal_mixture_reaches_1_over_alpha() -> None:
    """Ville's inequality: the mixture martingale of Howard et al. (2021) crosses 1/alpha with
    probability at most alpha, at any n. Checked by integrating the mixture numerically."""
    from scipy import integrate

    gates = Gates()
    for n in (50, 200, 2000, 20000):
        verdict = Verdict("b", "a", PairedSums(n=n, d=0.0, d2=float(n - 1)), gates)  # sd 1
        half_width = verdict.half_width
        rho2 = (-2 * math.log(0.1) + math.log(-2 * math.log(0.1) + 1)) / gates.planned_outcomes
        precision = 1 / rho2  # of the half-normal mixing distribution over lambda >= 0
        s, v = n * half_width, n  # the sum's excess at the bound, its variance

        def integrand(lam: float, s: float = s, v: int = v, precision: float = precision) -> float:
            density = 2 * math.sqrt(precision / (2 * math.pi)) * math.exp(-precision * lam**2 / 2)
            return math.exp(lam * s - lam**2 * v / 2) * density

        mixture, _ = integrate.quad(integrand, 0, math.inf, limit=200)
        assert mixture == pytest.approx(1 / 0.05, rel=1e-6), n
        assert half_width > 1.6449 / math.sqrt(n)  # wider than a one-look z-bound


def test_clusters_add_up_to_the_whole() -> None:
    trips = truth(1000)
    control, candidate = predicted(trips, "control", 1), predicted(trips, "better", 2)
    by_cluster = paired_sums(control, candidate, trips)
    verdict = Verdict("2.0.0", "1.0.0", overall(by_cluster), Gates())
    errors = [(frame["eta_minutes"] - trips["eta_minutes"]).abs() for frame in (candidate, control)]
    assert verdict.mae_candidate == pytest.approx(errors[0].mean())
    assert verdict.difference == pytest.approx((errors[0] - errors[1]).mean())
    assert verdict.sd == pytest.approx((errors[0] - errors[1]).std(ddof=1))
    assert sum(s.n for s in by_cluster.values()) == 1000 and sorted(by_cluster) == list(range(8))


def test_only_trips_both_versions_predicted_with_an_outcome_are_paired() -> None:
    trips = truth(300)
    control = predicted(trips, "control", 1)
    candidate = pd.concat([predicted(trips, "worse", 2), predicted(trips, "control", 3)])
    sums = overall(paired_sums(control.iloc[:200], candidate, trips.iloc[50:]))
    assert sums.n == 150  # trips 50..199; the candidate's second prediction of each counts
    latest = candidate.drop_duplicates("trip_id", keep="last")
    assert sums.ae_candidate == pytest.approx(
        (latest["eta_minutes"] - trips["eta_minutes"]).abs().iloc[50:200].sum()
    )


def served(trips: pd.DataFrame, frame: pd.DataFrame, clusters: list[int]) -> pd.DataFrame:
    return frame.assign(model_version="", served=trips["user_cluster"].isin(clusters).to_numpy())


@pytest.fixture
def canary(cfg, artifact_root: Path, tmp_path: Path):
    """0.1.0 serving clusters 0-6 and 0.2.0 a canary on 7, both live."""
    for version in ("0.1.0", "0.2.0"):
        make_live(cfg, tmp_path, version)
    ctx = context(cfg, tmp_path)
    traffic.record(ctx.store, {"0.1.0": range(7), "0.2.0": [7]}, 8, ["0.1.0", "0.2.0"], "canary")
    return ctx


def batch_run(ctx, kind: str, n_trips: int, seed: int) -> None:
    """One batch run of both versions on the same trips: served and shadow rows, and the
    trips' outcomes, as `inv run-scheduled` writes them."""
    trips = truth(n_trips, seed)
    now = traffic.current(ctx.store)
    sink = ParquetPredictions(ctx.names.artifact_root)
    for version, frame in (
        ("0.1.0", predicted(trips, "control", seed + 1)),
        ("0.2.0", predicted(trips, kind, seed + 2)),
    ):
        rows = served(trips, frame, now.clusters_of(version)).assign(model_version=version)
        sink.write(version, f"run-{seed}", rows)
    record_outcomes(ctx.names.artifact_root, trips)


def refused(ctx, root: Path, message: str, *args, **kwargs) -> str:
    before = snapshot(root)
    with pytest.raises(ReleaseError) as error:
        promotion.promote(ctx, *args, **kwargs)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert snapshot(root) == before
    return str(error.value)


def test_a_worse_canary_is_refused_promotion_and_the_guard_demotes_it(
    canary, artifact_root: Path, capsys
) -> None:
    for seed in (10, 20):
        batch_run(canary, "worse", 300, seed)
    (comparison,) = evidence.compare_live(canary)
    assert comparison.control == "0.1.0" and comparison.overall.verdict == "worse"
    # Paired: both versions on the same 600 trips; served rows of a cluster from one version.
    assert comparison.overall.n == 600
    rows = pd.concat([ParquetPredictions(str(artifact_root)).read(v) for v in ("0.1.0", "0.2.0")])
    assert len(rows) == 600 and rows.groupby("user_cluster")["model_version"].nunique().max() == 1
    assert set(rows[rows.model_version == "0.2.0"].user_cluster) == {7}

    message = refused(
        canary, artifact_root, "0.2.0 is not promoted: 0.2.0 vs 0.1.0: n=600", "0.2.0"
    )
    # +3 minutes on every ETA: the MAE grows by about 1.9 (errors of N(3, 1.5), not N(0, 1.5)).
    pattern = (
        r"difference \+(\d\.\d+) min \[\+(\d\.\d+), \+(\d\.\d+)\] "
        r"\(always-valid, 95% each bound\), worse"
    )
    numbers = re.search(pattern, message)
    assert numbers and 1.5 < float(numbers[2]) < float(numbers[1]) < float(numbers[3]) < 2.3

    # `inv versions` shows each live version's share and its verdict now.
    table = versions.table(canary).splitlines()
    standing = {line.split()[0]: line for line in table[1:]}
    assert "88% (0-6)  control" in standing["0.1.0"]
    assert "12% (7)    worse" in standing["0.2.0"]

    capsys.readouterr()
    (record,) = promotion.guard(canary)
    assert record.clusters == {"0.1.0": list(range(8))}
    assert record.evidence["verdict"] == "worse" and record.evidence["n"] == 600
    assert "clusters 7 moved from 0.2.0 to 0.1.0" in capsys.readouterr().out
    history = commands.describe_history(canary)
    assert "guard: 0.2.0 is worse than 0.1.0" in history
    assert "evidence: 0.2.0 vs 0.1.0: n=600, MAE difference +" in history
    # Nothing worse serves now: the guard changes nothing more.
    before = snapshot(artifact_root)
    assert promotion.guard(canary) == [] and snapshot(artifact_root) == before


def test_a_better_canary_is_promoted_step_by_step_with_its_evidence(
    canary, artifact_root: Path
) -> None:
    batch_run(canary, "better", 600, 10)
    steps = [promotion.promote(canary, "0.2.0")]
    # Progressive delivery: the next step waits for fresh evidence (release.gates
    # .min_new_outcomes, 200), not the same 600 pairs read a minute later.
    refused(
        canary,
        artifact_root,
        "0.2.0 is not promoted: 0 new paired outcomes since its last step",
        "0.2.0",
    )
    batch_run(canary, "better", 150, 20)
    refused(canary, artifact_root, "150 new paired outcomes since its last step", "0.2.0")
    batch_run(canary, "better", 100, 30)
    canary.cfg.release.gates.min_hours_between_steps = 1  # and optionally a pause
    refused(canary, artifact_root, "its last step was 0.0 h ago", "0.2.0")
    canary.cfg.release.gates.min_hours_between_steps = 0
    steps.append(promotion.promote(canary, "0.2.0"))
    for record, expected in zip(steps, ([4, 5, 6, 7], list(range(8))), strict=True):
        assert record.clusters_of("0.2.0") == expected
        assert record.evidence["verdict"] == "better" and record.evidence["forced"] is False
    assert [s.evidence["new_outcomes"] for s in steps] == [600, 250]
    assert [s.reason.split(":")[0] for s in steps] == [
        "promote 0.2.0 to 4-7 (50%)",
        "promote 0.2.0 to 0-7 (100%)",
    ]
    refused(canary, artifact_root, "0.2.0 already serves every user cluster", "0.2.0")
    records = [json.loads(p.read_text()) for p in sorted((artifact_root / "traffic").iterdir())]
    assert [r["evidence"]["verdict"] for r in records if "evidence" in r] == ["better", "better"]


def test_a_version_better_overall_but_worse_for_one_cluster_is_not_promoted(
    canary, artifact_root: Path
) -> None:
    """The overall verdict is primary, but the gate also refuses a version that is worse
    for some users: cluster 2, after Holm's adjustment for the eight clusters."""
    batch_run(canary, "better but worse in cluster 2", 2000, 10)
    (comparison,) = evidence.compare_live(canary)
    assert comparison.overall.verdict == "better"
    assert comparison.worse_clusters() == [2]
    assert {c: v.verdict for c, v in comparison.clusters.items() if c != 2} == {
        c: "better" for c in (0, 1, 3, 4, 5, 6, 7)
    }
    message = refused(canary, artifact_root, "0.2.0 is not promoted: worse than 0.1.0 in user "
                      "cluster(s) 2 (Holm-adjusted, 0.2.0 vs 0.1.0: n=", "0.2.0")  # fmt: skip
    assert message.endswith("(`--force --reason WHY` overrides)")


def test_too_few_outcomes_refuse_promotion_saying_how_many_more(
    canary, artifact_root: Path
) -> None:
    batch_run(canary, "better", 120, 10)
    refused(
        canary, artifact_root, "inconclusive, 80 more outcomes needed before any verdict", "0.2.0"
    )
    refused(canary, artifact_root, "--force needs --reason", "0.2.0", force=True)
    forced = promotion.promote(canary, "0.2.0", force=True, reason="hotfix of a known bug")
    assert forced.evidence["forced"] is True and forced.evidence["verdict"] == "inconclusive"
    assert "forced: hotfix of a known bug" in forced.reason
    assert "inconclusive, forced" in commands.describe_history(canary)


def test_inv_ab_prints_every_cluster_and_writes_the_same_page(
    canary, tmp_path: Path, capsys
) -> None:
    batch_run(canary, "worse", 400, 10)
    comparisons = evidence.compare_live(canary)
    report.show(comparisons, "local")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("0.2.0 against control 0.1.0: worse")
    assert re.split(r"\s{2,}", lines[1]) == list(report.COLUMNS)
    assert [line.split()[0] for line in lines[2:]] == [*map(str, range(8)), "all"]
    assert lines[-1].split()[1] == "400" and lines[-1].endswith("worse")
    page = report.write(tmp_path / "ab.html", comparisons, "taxi", "local").read_text()
    assert 'data-candidate="0.2.0" data-verdict="worse"' in page and "<script" not in page
    assert page.count("<tr>") == 10  # the header and nine rows
    # The verdict at a glance: an interval per cluster and overall, against 0 and the margin.
    (axes,) = chart_axes(page)["plot-ab-1"]
    assert axes[0] >= 2 and axes[1] == 9  # x ticks; a y tick per cluster and "all"
    assert page.count('id="interval-plot-ab-1-') == 9 and 'id="zero-plot-ab-1"' in page
    assert ">margin ±0.25<" in page or ">margin ±" in page


def test_runs_made_a_day_before_the_window_are_not_read(canary, artifact_root: Path) -> None:
    sink = ParquetPredictions(str(artifact_root))
    frame = predicted(truth(10), "control", 1).assign(model_version="0.1.0", served=True)
    for run_id in ("20261101T000000-aaaaaa", "online-20261127T120000-bbbbbb", "by-hand"):
        sink.write("0.1.0", run_id, frame.assign(trip_id=[f"{run_id}/{i}" for i in range(10)]))
    since = datetime(2026, 11, 28, 6, tzinfo=UTC)  # the online run is 18 hours earlier
    kept = {trip.split("/")[0] for trip in sink.read("0.1.0", since=since).trip_id}
    assert kept == {"online-20261127T120000-bbbbbb", "by-hand"}
    assert len(sink.read("0.1.0")) == 30


def test_a_backfill_pairs_with_the_outcomes_observed_in_its_interval(canary) -> None:
    """Runs made now over a past interval (last month's partitions) pair with the outcomes
    observed then, before the candidate went live: the outcomes of a run's trips are read
    from the start of its recorded interval, not from the candidate's release."""
    store = canary.store
    went_live = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()  # `inv ab --since`
    past = Interval(datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC))
    trips = truth(300, 10)
    observed = trips[["trip_id", "eta_minutes"]].assign(observed_at=past.start + timedelta(hours=2))
    buffer = io.BytesIO()
    observed.to_parquet(buffer, index=False)
    store.write(synthetic_outcomes_key("backfill"), buffer.getvalue())
    run_id = new_run_id()
    sink = ParquetPredictions(canary.names.artifact_root)
    for version, kind in (("0.1.0", "control"), ("0.2.0", "better")):
        frame = predicted(trips, kind, 11).assign(model_version=version, served=True)
        sink.write(version, run_id, frame)
    # Without the runs' records, the outcomes are older than the candidate: none pair.
    assert evidence.compare_live(canary, since=went_live)[0].overall.n == 0
    for version in ("0.1.0", "0.2.0"):
        prediction_runs.write(store, version, run_id, {"interval": past.to_json()})
    (comparison,) = evidence.compare_live(canary, since=went_live)
    assert comparison.overall.n == 300 and comparison.overall.verdict == "better"


def test_inv_ab_refusals(canary) -> None:
    with pytest.raises(ReleaseError, match="control 9.9.9 is not live"):
        evidence.compare_live(canary, control="9.9.9")
    with pytest.raises(ReleaseError, match="invalid --since 'yesterday'"):
        evidence.compare_live(canary, since="yesterday")
    (comparison,) = evidence.compare_live(canary)  # no outcomes yet
    assert comparison.overall.n == 0 and comparison.overall.verdict == "inconclusive"
