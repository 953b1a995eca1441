"""Sharded batch inference (`inference.shards`): a run's trips split by a stable hash of
`trip_id`, a task per shard in parallel, every trip predicted exactly once, the shards read
as one run."""

import json
import re
import threading
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import SHA, composed, release_context, release_model

from {{ cookiecutter.package }}.artifacts import prediction_runs
from {{ cookiecutter.package }}.artifacts.data_sources import SyntheticSource
from {{ cookiecutter.package }}.artifacts.files_source import FileSource
from {{ cookiecutter.package }}.artifacts.intervals import Interval
from {{ cookiecutter.package }}.artifacts.predictions import ParquetPredictions
from {{ cookiecutter.package }}.artifacts.sample_data import write_sample
from {{ cookiecutter.package }}.artifacts.store import AlreadyExistsError, open_store
from {{ cookiecutter.package }}.engines.airflow import AirflowEngine, parameters_of
from {{ cookiecutter.package }}.ml.data import make_trips
from {{ cookiecutter.package }}.pipelines import inference_steps
from {{ cookiecutter.package }}.release.ticks import run_inference
from {{ cookiecutter.package }}.release.workflows import compile_spec, deploy_workflows, train_adhoc

SMALL = ["data.n_trips=600", "data.inference_batch_size=300", "model=ridge"]


def test_the_compiled_workflows_fan_out_a_task_per_shard(tmp_path: Path) -> None:
    cfg = composed(
        "airflow",
        [*SMALL, "inference.shards=3"],
        {"env.artifact_root": str(tmp_path / "a"), "env.airflow.dags_folder": str(tmp_path)},
    )
    ctx = release_context(cfg, tmp_path)
    text = compile_spec(ctx, "inference", SHA)
    spec = yaml.safe_load(text)
    (loop,) = [t for name, t in spec["root"]["dag"]["tasks"].items() if name.startswith("for-loop")]
    assert loop["parameterIterator"]["items"]["raw"] == "[0, 1, 2]"
    inner = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    assert sorted(inner) == ["make-batch-features", "predict-batch"]
    for task in inner.values():  # a failed shard is tried again alone
        assert task["retryPolicy"]["maxRetryCount"] == 2
    engine = AirflowEngine.from_config(cfg, ctx.store, ctx.project_root, ctx.environments)
    dag = engine.render(ctx.names, "inference", parameters_of(text))
    assert "predict = BashOperator.partial(" in dag and "retries=2," in dag
    assert "retry_delay=timedelta(seconds=30)," in dag
    assert dag.count("SHARD=") == 3 and "SHARD='2')])" in dag
    # One shard (the default): no loop, no mapping, as before.
    single = composed("airflow", SMALL, {"env.artifact_root": str(tmp_path / "b"),
                                         "env.airflow.dags_folder": str(tmp_path)})  # fmt: skip
    one = compile_spec(release_context(single, tmp_path), "inference", SHA)
    assert "for-loop" not in one and "parameterIterator" not in one


def test_every_trip_is_predicted_once_by_the_shards_of_a_run(tmp_path: Path) -> None:
    """Through the local engine: kfp's local runner runs the ParallelFor's shards."""
    root = tmp_path / "artifacts"
    cfg = composed("local", [*SMALL, "inference.shards=2"], {"env.artifact_root": str(root)})
    ctx = release_context(cfg, tmp_path)
    train_adhoc(ctx, SHA)
    deploy_workflows(ctx, SHA)
    output = run_inference(ctx, "batch-1", "2026-12-01", "2026-12-02")
    written = sorted(output.splitlines())
    assert [Path(p).name for p in written] == [
        "batch-1.shard-0-of-2.parquet",
        "batch-1.shard-1-of-2.parquet",
    ]
    shards = [pd.read_parquet(p) for p in written]
    assert all(len(shard) for shard in shards)
    predicted = pd.concat(shards, ignore_index=True)
    # The run's synthetic batch: every trip once, in exactly one shard.
    seed_of = json.loads((root / f"runs/{cfg.version}/batch-1.shard-0-of-2.json").read_text())
    batch = make_trips(300, int(seed_of["read"]["location"].split("=")[1]))
    assert sorted(predicted.trip_id) == sorted(batch.trip_id)
    keep = inference_steps.shard_keep(1, 2)
    assert set(shards[1].trip_id) == set(batch.trip_id[keep(batch)])
    # Read as one run: one run id, two records of it, one per shard.
    assert ParquetPredictions(str(root)).runs(cfg.version) == ["batch-1"]
    records = prediction_runs.read(ctx.store, cfg.version)
    assert [r["shard"] for r in records] == [{"index": 0, "of": 2}, {"index": 1, "of": 2}]
    assert sum(r["predicted"] for r in records) == 300


def test_the_engine_tries_a_failed_shard_again_alone(tmp_path: Path) -> None:
    """Through the local engine: kfp's local runner honours the compiled retry policy.
    Shard 1's record cannot be written on its first attempt (a folder stands where the file
    goes: a store error, after its predictions); the folder is removed while kfp waits its
    30 s backoff; the second attempt completes. Shard 0 ran once; every trip once."""
    root = tmp_path / "artifacts"
    cfg = composed("local", [*SMALL, "inference.shards=2"], {"env.artifact_root": str(root)})
    ctx = release_context(cfg, tmp_path)
    train_adhoc(ctx, SHA)
    deploy_workflows(ctx, SHA)
    blocker = root / f"runs/{cfg.version}/batch-2.shard-1-of-2.json"
    blocker.mkdir(parents=True)
    logs = tmp_path / ".kfp-local/logs"
    before = set(logs.glob("*.log"))
    predictions = root / f"predictions/{cfg.version}"

    def clear_once_failed() -> None:  # as an operator (or a flaky disk) would, meanwhile
        # Shard 1's first attempt writes its predictions, then fails on its record at once;
        # kfp tries it again 30 s later. Its log says FAILURE only when kfp flushes it (not
        # always before the retry), so the predictions are the sign it is waiting.
        while not list(predictions.glob("batch-2.shard-1-of-2*.parquet")):
            time.sleep(0.2)
        time.sleep(5)
        blocker.rmdir()

    clearing = threading.Thread(target=clear_once_failed, daemon=True)
    clearing.start()
    output = run_inference(ctx, "batch-2", "2026-12-01", "2026-12-02")
    clearing.join(timeout=5)
    assert blocker.is_file()  # the record the second attempt wrote
    (log,) = set(logs.glob("*.log")) - before
    text = log.read_text()
    # Each attempt of a task logs its executor input, which names its loop iteration.
    attempts = Counter(re.findall(r"(iteration-\d/[\w-]+)/executor_output.json\"", text))
    assert attempts == {
        "iteration-0/make-batch-features": 1,
        "iteration-1/make-batch-features": 1,
        "iteration-0/predict-batch": 1,
        "iteration-1/predict-batch": 2,  # shard 1 alone, tried again
    }
    written = sorted(output.splitlines())
    assert len(written) == 2 and sum("earlier attempt" in line for line in written) == 1
    predicted = ParquetPredictions(str(root)).read(cfg.version, shadow=True)
    assert predicted.trip_id.is_unique and len(predicted) == 300
    assert len(prediction_runs.read(ctx.store, cfg.version)) == 2


def test_a_shard_tried_again_after_failing_half_way_completes_alone(
    tmp_path: Path, monkeypatch
) -> None:
    """What an engine's retry of one shard's task does (Kubeflow's retry policy, Airflow's
    retries of one map index): shard 1 dies after writing its predictions, before its
    record; tried again, it completes; shard 0 is not run again; every trip once."""
    root = tmp_path / "artifacts"
    names = release_model(root, "1.0.0", {"_target_": "sklearn.linear_model.Ridge"}, tmp_path)
    source = SyntheticSource(str(root), 0, 0)
    interval = Interval.resolve("2026-12-01", "2026-12-02")

    def shard(index: int) -> str:
        features, batch = tmp_path / f"f{index}.parquet", tmp_path / f"b{index}.json"
        inference_steps.make_batch_features(
            names, 400, 9, [7], str(features), str(batch), interval, source, 0.01, True, index, 2
        )
        return inference_steps.predict_batch(
            names, str(features), str(batch), "run-1", None, index, 2
        )

    first = Path(shard(0))
    kept = first.stat().st_mtime_ns
    real = prediction_runs.write

    def dies(*args, **kwargs):
        raise OSError("the task's pod was evicted")

    monkeypatch.setattr(prediction_runs, "write", dies)
    with pytest.raises(OSError, match="evicted"):
        shard(1)
    monkeypatch.setattr(prediction_runs, "write", real)
    assert "earlier attempt" in shard(1)  # the retry keeps what the first attempt wrote
    assert first.stat().st_mtime_ns == kept
    predicted = ParquetPredictions(str(root)).read("1.0.0", shadow=True)
    assert sorted(predicted.trip_id) == sorted(make_trips(400, 9).trip_id)
    assert len(prediction_runs.read(open_store(str(root)), "1.0.0")) == 2
    # The same run id for another interval is another run: refused.
    other = Interval.resolve("2026-12-02", "2026-12-03")
    features, batch = tmp_path / "f.parquet", tmp_path / "b.json"
    inference_steps.make_batch_features(
        names, 400, 9, [7], str(features), str(batch), other, source, 0.01, True, 0, 2
    )
    with pytest.raises(AlreadyExistsError, match="run run-1.shard-0-of-2 of 1.0.0 exists"):
        inference_steps.predict_batch(names, str(features), str(batch), "run-1", None, 0, 2)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_file_sources_shards_split_its_trips_as_they_are_read(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "exports"
    write_sample(out, 800, fmt, with_outcomes=True)
    day = sorted((out / "batch").iterdir())[0]
    batch_file = next(day.iterdir())
    partition = pd.read_csv(batch_file) if fmt == "csv" else pd.read_parquet(batch_file)
    root = tmp_path / "artifacts"
    names = release_model(root, "1.0.0", {"_target_": "sklearn.linear_model.Ridge"}, tmp_path)
    source = FileSource(str(root), str(out / "trips.csv"), str(day / f"*.{fmt}"))
    seen: list[str] = []
    for shard in (0, 1):
        features, batch = tmp_path / f"f{shard}", tmp_path / f"b{shard}.json"
        rows = inference_steps.make_batch_features(
            names, 0, 0, [7], str(features), str(batch), Interval.resolve(), source,
            0.01, True, shard, 2, batch_rows=20,
        )  # fmt: skip
        read = json.loads(batch.read_text())["read"]
        assert read["rows"] == len(partition) and read["kept"] == rows > 0
        seen += list(pd.read_parquet(features).trip_id)
    assert sorted(seen) == sorted(partition.trip_id)  # each trip in exactly one shard
