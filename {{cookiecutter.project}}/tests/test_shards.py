"""Sharded batch inference (`inference.shards`): a run's trips split by a stable hash of
`trip_id`, a task per shard in parallel, every trip predicted exactly once, the shards read
as one run."""

import json
from pathlib import Path

import pandas as pd
import yaml
from conftest import SHA, composed, release_context

from {{ cookiecutter.package }}.artifacts import prediction_runs
from {{ cookiecutter.package }}.artifacts.predictions import ParquetPredictions
from {{ cookiecutter.package }}.engines.airflow import AirflowEngine, parameters_of
from {{ cookiecutter.package }}.ml.data import make_trips
from {{ cookiecutter.package }}.pipelines import steps
from {{ cookiecutter.package }}.release.workflows import (
    compile_spec,
    deploy_workflows,
    run_inference,
    train_adhoc,
)

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
    keep = steps.shard_keep(1, 2)
    assert set(shards[1].trip_id) == set(batch.trip_id[keep(batch)])
    # Read as one run: one run id, two records of it, one per shard.
    assert ParquetPredictions(str(root)).runs(cfg.version) == ["batch-1"]
    records = prediction_runs.read(ctx.store, cfg.version)
    assert [r["shard"] for r in records] == [{"index": 0, "of": 2}, {"index": 1, "of": 2}]
    assert sum(r["predicted"] for r in records) == 300
