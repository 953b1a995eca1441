"""A batch-inference run's data interval (`artifacts.intervals`): each run predicts the trips
of its own period, records what it read beside its predictions, and an empty period is one
line. Daily partitions are written by `inv sample-data`, as a team's export lands them."""

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import SHA, composed, release_context, release_model, snapshot

from {{ cookiecutter.package }}.artifacts import prediction_runs
from {{ cookiecutter.package }}.artifacts.data_sources import DataSourceError, read_outcomes
from {{ cookiecutter.package }}.artifacts.files_source import FileSource
from {{ cookiecutter.package }}.artifacts.intervals import (
    Interval,
    IntervalError,
    moment,
    render,
    render_periods,
)
from {{ cookiecutter.package }}.artifacts.predictions import ParquetPredictions
from {{ cookiecutter.package }}.artifacts.sample_data import write_sample
from {{ cookiecutter.package }}.artifacts.store import open_store
from {{ cookiecutter.package }}.pipelines import inference_steps
from {{ cookiecutter.package }}.release.ticks import run_scheduled
from {{ cookiecutter.package }}.release.workflows import compile_spec, deploy_workflows, train_adhoc

RUSH = [7, 8, 9]
RIDGE = {"_target_": "sklearn.linear_model.Ridge"}
TEMPLATE = "batch/dt={start:%Y-%m-%d}/*.parquet"
# kfp's schedule time placeholder, as its local runner leaves it (built in two halves, so
# that no template engine renders it).
UNRESOLVED = "{" + "{$.pipeline_job_schedule_time_utc}" + "}"


def exports(tmp_path: Path) -> tuple[Path, list[str]]:
    """`inv sample-data --with-outcomes` output and its partitions' days, in order."""
    out = tmp_path / "exports"
    write_sample(out, 800, "parquet", with_outcomes=True)
    days = sorted(p.name.removeprefix("dt=") for p in (out / "batch").iterdir())
    return out, days


def day(text: str) -> Interval:
    return Interval(moment(text), moment(text) + timedelta(days=1))


def files_source(root: Path, out: Path, **settings) -> FileSource:
    return FileSource(
        str(root),
        str(out / "trips.parquet"),
        batch_path=str(out / TEMPLATE),
        outcomes_path=str(out / "outcomes/*/*.parquet"),
        **settings,
    )


def predict(names, source, interval: Interval, run_id: str, tmp_path: Path) -> str:
    """One inference run through the workflow's two steps, as a pipeline runs them."""
    features, batch = tmp_path / f"{run_id}.parquet", tmp_path / f"{run_id}.json"
    inference_steps.make_batch_features(
        names, 0, -1, RUSH, str(features), str(batch), interval, source
    )
    return inference_steps.predict_batch(names, str(features), str(batch), run_id)


def test_an_interval_is_what_the_run_was_given_else_the_schedules_period() -> None:
    now = datetime(2026, 12, 5, 6, 30, tzinfo=UTC)
    given = Interval.resolve("2026-12-04", "2026-12-05T00:00:00+00:00", UNRESOLVED, 600, now)
    assert given == day("2026-12-04") and str(given) == "[2026-12-04, 2026-12-05)"
    # A Kubeflow recurring run: the period before its schedule time.
    scheduled = Interval.resolve("", "", "2026-12-05T06:00:00Z", 3600, now)
    assert scheduled == Interval(now - timedelta(minutes=90), now - timedelta(minutes=30))
    # kfp's local runner leaves the placeholder, Airflow renders a missing interval "None":
    # the clock's period.
    for nothing in (UNRESOLVED, "None", ""):
        assert Interval.resolve("", "", nothing, 600, now) == Interval(
            now - timedelta(minutes=10), now
        )
    # Airflow 3's trigger timetables give a run a point in time: the period before it.
    point = "2026-12-05T06:00:00+00:00"
    assert Interval.resolve(point, point, "", 3600) == scheduled
    with pytest.raises(IntervalError, match=r"^the interval \[2026-12-05, 2026-12-04\) is empty"):
        Interval.resolve("2026-12-05", "2026-12-04")
    with pytest.raises(IntervalError, match="invalid start 'yesterday': use an ISO date"):
        Interval.resolve("yesterday", "2026-12-04")
    assert render("t/dt={start:%Y-%m-%d}/h={end:%H}", given, "path") == "t/dt=2026-12-04/h=00"
    assert render("t/fixed.parquet", None, "path") == "t/fixed.parquet"
    with pytest.raises(IntervalError, match=r"names \{day\}: a template may name only"):
        render("t/{day}.parquet", given, "data_source.batch_path")


def test_each_run_predicts_its_own_partition_and_records_what_it_read(tmp_path: Path) -> None:
    out, days = exports(tmp_path)
    assert len(days) == 7
    root = tmp_path / "artifacts"
    names = release_model(root, "1.0.0", RIDGE, tmp_path)
    source = files_source(root, out)
    predicted_ids: list[str] = []
    for n, text in enumerate(days[:3]):
        interval = day(text)
        written = predict(names, source, interval, f"run-{n}", tmp_path)
        predicted = pd.read_parquet(written)
        partition = out / f"batch/dt={text}/trips.parquet"
        assert sorted(predicted.trip_id) == sorted(pd.read_parquet(partition).trip_id)
        record = prediction_runs.read(open_store(str(root)), "1.0.0")[n]
        assert record["run_id"] == f"run-{n}"
        assert record["interval"] == interval.to_json() and record["predictions"] == [written]
        assert record["read"]["files"] == [
            {
                "path": str(partition),
                "sha256": hashlib.sha256(partition.read_bytes()).hexdigest(),
                "rows": len(predicted),
            }
        ]
        assert record["predicted"] == len(predicted) == record["rows_valid"]
        # The outcomes of the interval's trips, read from its start on, join one to one.
        outcomes = read_outcomes(source, interval.start, interval.end + timedelta(days=1))
        joined = predicted.merge(outcomes, on="trip_id", validate="one_to_one")
        assert len(joined) == len(predicted)
        predicted_ids += list(predicted.trip_id)
    assert len(predicted_ids) == len(set(predicted_ids))  # no trip in two runs


def test_an_empty_period_predicts_nothing_and_a_required_batch_is_refused(
    tmp_path: Path,
) -> None:
    out, days = exports(tmp_path)
    root = tmp_path / "artifacts"
    names = release_model(root, "1.0.0", RIDGE, tmp_path)
    before = snapshot(root)
    said = predict(names, files_source(root, out), day("2001-01-01"), "run-empty", tmp_path)
    assert said == "no trips in [2001-01-01, 2001-01-02): nothing predicted"
    assert snapshot(root) == before
    required = files_source(root, out, require_batch=True)
    with pytest.raises(DataSourceError) as refused:
        predict(names, required, day("2001-01-01"), "run-required", tmp_path)
    assert str(refused.value) == (
        f"no batch file matches '{out}/batch/dt=2001-01-01/*.parquet' for "
        "[2001-01-01, 2001-01-02) (data_source.require_batch is set)"
    )
    assert snapshot(root) == before
    # A partition that is there is predicted by the same source.
    assert predict(names, required, day(days[0]), "run-0", tmp_path).endswith("run-0.parquet")


def test_an_interval_of_many_periods_names_every_periods_partition() -> None:
    days = Interval(moment("2026-11-23"), moment("2026-11-28"))
    assert render_periods("b/dt={start:%Y-%m-%d}/*.parquet", days, "p") == [
        f"b/dt=2026-11-{d}/*.parquet" for d in range(23, 28)
    ]
    hours = Interval(moment("2026-11-23T22:00"), moment("2026-11-24T01:00"))
    assert render_periods("b/{start:%Y%m%d}/{start:%H}.csv", hours, "p") == [
        "b/20261123/22.csv",
        "b/20261123/23.csv",
        "b/20261124/00.csv",
    ]
    # Within one period, and without a period: the one name `render` gives.
    within = Interval(moment("2026-11-23T00:17:32"), moment("2026-11-23T00:27:32"))
    assert render_periods("b/dt={start:%Y-%m-%d}/*", within, "p") == ["b/dt=2026-11-23/*"]
    assert render_periods("b/fixed.parquet", days, "p") == ["b/fixed.parquet"]
    # A month template over three months: each month once; an interval crossing midnight
    # by ten minutes reads both days.
    quarter = Interval(moment("2026-01-15"), moment("2026-03-02"))
    months = ["m=2026-01", "m=2026-02", "m=2026-03"]
    assert render_periods("m={start:%Y-%m}", quarter, "p") == months
    midnight = Interval(moment("2026-11-23T23:55"), moment("2026-11-24T00:05"))
    both = ["dt=2026-11-23", "dt=2026-11-24"]
    assert render_periods("dt={start:%Y-%m-%d}", midnight, "p") == both
    with pytest.raises(IntervalError, match=r"spans 432001 periods of p .* split it into"):
        render_periods("s={start:%Y%m%d%H%M%S}", days, "p")


def test_a_backfill_of_five_days_predicts_exactly_their_trips(tmp_path: Path) -> None:
    """Issue 50 (1): `--start/--end` over five daily partitions read one day and exited 0."""
    out, days = exports(tmp_path)
    root = tmp_path / "artifacts"
    names = release_model(root, "1.0.0", RIDGE, tmp_path)
    interval = Interval(moment(days[1]), moment(days[6]))
    said = predict(names, files_source(root, out, require_batch=True), interval, "run-5d",
                   tmp_path)  # fmt: skip
    partitions = [out / f"batch/dt={d}/trips.parquet" for d in days[1:6]]
    expected = pd.concat(pd.read_parquet(p) for p in partitions)
    assert said.startswith("5 parts: ")  # a part a file
    predicted = ParquetPredictions(str(root)).read("1.0.0", shadow=True)
    assert sorted(predicted.trip_id) == sorted(expected.trip_id)
    (record,) = prediction_runs.read(open_store(str(root)), "1.0.0")
    assert [f["path"] for f in record["read"]["files"]] == [str(p) for p in partitions]
    assert record["read"]["locations"] == [str(out / f"batch/dt={d}/*.parquet") for d in days[1:6]]
    assert record["predicted"] == len(expected)


def test_an_hourly_template_over_three_hours_reads_three_partitions(tmp_path: Path) -> None:
    out, days = exports(tmp_path)
    trips = pd.read_parquet(out / f"batch/dt={days[2]}/trips.parquet")
    hours = pd.to_datetime(trips.picked_up_at, utc=True).dt.strftime("%Y%m%dT%H")
    for hour, rows in trips.groupby(hours):
        (out / "hourly" / hour).mkdir(parents=True)
        rows.to_parquet(out / "hourly" / hour / "trips.parquet", index=False)
    root = tmp_path / "artifacts"
    names = release_model(root, "1.0.0", RIDGE, tmp_path)
    source = FileSource(
        str(root), str(out / "trips.parquet"), str(out / "hourly/{start:%Y%m%dT%H}/*.parquet"),
        None, None,
    )  # fmt: skip
    interval = Interval(moment(days[2]) + timedelta(hours=7), moment(days[2]) + timedelta(hours=10))
    predict(names, source, interval, "run-3h", tmp_path)
    predicted = ParquetPredictions(str(root)).read("1.0.0", shadow=True)
    assert sorted(predicted.trip_id) == sorted(trips[interval.contains(trips.picked_up_at)].trip_id)
    (record,) = prediction_runs.read(open_store(str(root)), "1.0.0")
    assert len(record["read"]["locations"]) == 3 and len(record["read"]["files"]) == len(
        {h for h in hours if h.endswith(("T07", "T08", "T09"))}
    )


def test_a_missing_middle_day_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    out, days = exports(tmp_path)
    root = tmp_path / "artifacts"
    names = release_model(root, "1.0.0", RIDGE, tmp_path)
    for leftover in (out / f"batch/dt={days[3]}").iterdir():
        leftover.unlink()
    before = snapshot(root)
    interval = Interval(moment(days[1]), moment(days[6]))
    with pytest.raises(DataSourceError) as refused:
        predict(names, files_source(root, out, require_batch=True), interval, "run-gap", tmp_path)
    assert str(refused.value).startswith(
        f"no batch file matches '{out}/batch/dt={days[3]}/*.parquet' for {interval}"
    )
    assert snapshot(root) == before


def test_a_time_column_keeps_the_intervals_rows_of_files_holding_many_days(
    tmp_path: Path,
) -> None:
    out, days = exports(tmp_path)
    week = pd.concat(pd.read_parquet(p) for p in sorted((out / "batch").glob("*/*.parquet")))
    week.to_parquet(out / "week.parquet", index=False)
    root = tmp_path / "artifacts"
    names = release_model(root, "1.0.0", RIDGE, tmp_path)
    source = FileSource(
        str(root), str(out / "trips.parquet"), str(out / "week.parquet"), None, None,
        batch_column="picked_up_at",
    )  # fmt: skip
    interval = Interval(moment(days[2]) + timedelta(hours=6), moment(days[3]))
    predicted = pd.read_parquet(predict(names, source, interval, "run-1", tmp_path))
    picked_up = week.set_index("trip_id").loc[predicted.trip_id, "picked_up_at"]
    assert interval.contains(picked_up).all()
    assert len(predicted) == interval.contains(week.picked_up_at).sum() > 0
    three_days = Interval(moment(days[1]), moment(days[4]))
    predicted = pd.read_parquet(predict(names, source, three_days, "run-3d", tmp_path))
    assert len(predicted) == three_days.contains(week.picked_up_at).sum() > len(week) / 3


def test_a_batch_path_naming_anything_but_start_and_end_is_refused_before_any_run(
    tmp_path: Path,
) -> None:
    out, _ = exports(tmp_path)
    source = FileSource(str(tmp_path), str(out / "trips.parquet"), str(out / "{day}.parquet"))
    with pytest.raises(IntervalError, match=r"batch_path '.*' names \{day\}: a template may"):
        source.check()


def test_the_compiled_inference_workflow_takes_an_interval_and_the_schedule_time(
    cfg, tmp_path: Path
) -> None:
    spec = yaml.safe_load(compile_spec(release_context(cfg, tmp_path), "inference", SHA))
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert parameters["start"]["defaultValue"] == parameters["end"]["defaultValue"] == ""
    assert parameters["period_seconds"]["defaultValue"] == 600  # schedules.inference
    task = spec["root"]["dag"]["tasks"]["make-batch-features"]["inputs"]["parameters"]
    assert task["schedule_time"] == {"runtimeValue": {"constant": UNRESOLVED}}
    assert task["start"] == {"componentInputParameter": "start"}


@pytest.mark.slow
def test_scheduled_ticks_predict_the_period_since_the_last_one(tmp_path: Path, capsys) -> None:
    """Through the local engine (kfp's local runner, the version's own environment): a tick
    given --start/--end, then one that starts where it ended; a period without trips is
    one line, and nothing is written."""
    out, days = exports(tmp_path)
    root = tmp_path / "artifacts"
    cfg = composed(
        "local",
        ["model=ridge", "data_source=files"],
        {
            "env.artifact_root": str(root),
            "data_source.path": str(out / "trips.parquet"),
            "data_source.batch_path": str(out / TEMPLATE),
            "data_source.outcomes_path": str(out / "outcomes/*/*.parquet"),
        },
    )
    ctx = release_context(cfg, tmp_path)
    train_adhoc(ctx, SHA)
    deploy_workflows(ctx, SHA)
    (written,) = run_scheduled(ctx, "inference", days[0], days[1])
    partition = pd.read_parquet(out / f"batch/dt={days[0]}/trips.parquet")
    assert sorted(pd.read_parquet(written).trip_id) == sorted(partition.trip_id)
    (second,) = run_scheduled(ctx, "inference")  # from days[1] on: that day's partition
    (first_run, second_run) = prediction_runs.read(ctx.store, cfg.version)
    assert (
        second_run["interval"]["start"]
        == first_run["interval"]["end"]
        == (moment(days[1]).isoformat())
    )
    assert Path(second_run["read"]["files"][0]["path"]).parent.name == f"dt={days[1]}"

    before = snapshot(root)
    capsys.readouterr()
    assert run_scheduled(ctx, "inference", "2001-01-01", "2001-01-02") == [
        "no trips in [2001-01-01, 2001-01-02): nothing predicted"
    ]
    assert "nothing predicted" in capsys.readouterr().out
    assert snapshot(root) == before


def test_a_batch_larger_than_batch_rows_is_predicted_a_part_at_a_time(tmp_path: Path) -> None:
    out, days = exports(tmp_path)
    root = tmp_path / "artifacts"
    names = release_model(root, "1.0.0", RIDGE, tmp_path)
    features, batch = tmp_path / "features", tmp_path / "batch.json"
    source = files_source(root, out)
    interval = day(days[0])
    rows = inference_steps.make_batch_features(
        names, 0, -1, RUSH, str(features), str(batch), interval, source, batch_rows=30
    )
    partition = pd.read_parquet(out / f"batch/dt={days[0]}/trips.parquet")
    assert rows == len(partition) and len(list(features.glob("part-*"))) == -(-rows // 30)
    said = inference_steps.predict_batch(names, str(features), str(batch), "run-1")
    assert said.startswith(f"{-(-rows // 30)} parts: ")
    predicted = ParquetPredictions(str(root))
    assert predicted.runs("1.0.0") == ["run-1"]  # its parts are one run
    read = predicted.read("1.0.0", shadow=True)
    assert sorted(read.trip_id) == sorted(partition.trip_id)
    (record,) = prediction_runs.read(open_store(str(root)), "1.0.0")
    assert record["predicted"] == rows and len(record["predictions"]) == -(-rows // 30)
