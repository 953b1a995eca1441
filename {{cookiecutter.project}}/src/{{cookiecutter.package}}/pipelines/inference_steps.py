"""The batch-inference steps: the features of a run's trips (`make_batch_features`, a shard
of them when the run is sharded) and their predictions with the version's own model
(`predict_batch`), as plain functions over the stores (`pipelines.steps` holds what every
step shares, and the training steps). Each imports only what it uses: a task is a fresh
process.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from {{ cookiecutter.package }}.artifacts import models, prediction_runs, traffic
from {{ cookiecutter.package }}.artifacts.data_sources import (
    DataSource,
    Keep,
    inference_batches,
    record_outcomes,
)
from {{ cookiecutter.package }}.artifacts.intervals import Interval
from {{ cookiecutter.package }}.artifacts.names import (
    ReleaseNames,
    part_run_id,
    scheduled_run_id,
    shard_run_id,
)
from {{ cookiecutter.package }}.artifacts.predictions import SERVED, PredictionSink
from {{ cookiecutter.package }}.artifacts.store import AlreadyExistsError, open_store
from {{ cookiecutter.package }}.errors import UserError
from {{ cookiecutter.package }}.ml import TARGET
from {{ cookiecutter.package }}.pipelines.steps import (
    DEFAULT_BATCH_ROWS,
    DEFAULT_MAX_INVALID_SHARE,
    NOTHING,
    data_source_of,
    load_model,
    predictions_of,
)
from {{ cookiecutter.package }}.progress import Throughput

if TYPE_CHECKING:
    import pandas as pd


def batch_interval(start: str, end: str, schedule_time: str, period_seconds: int) -> Interval:
    """The run's data interval (`artifacts.intervals`): [start, end) when given (Airflow's
    data interval, `--start/--end`), else the schedule's period up to the schedule time
    (a Kubeflow recurring run), else up to now."""
    return Interval.resolve(start, end, schedule_time, period_seconds)


def shard_keep(shard: int, shards: int) -> Keep:
    """Which rows of a batch are shard `shard` of `shards`: a stable hash of `trip_id` (the
    one of `ml.uniqueness`), so each trip is in exactly one shard, whichever the run."""
    if not 0 <= shard < shards:
        raise UserError(f"shard {shard} does not exist: a run has shards 0 to {shards - 1}")

    def keep(batch: pd.DataFrame) -> Any:
        import numpy as np

        from {{ cookiecutter.package }}.ml.uniqueness import id_hashes

        return (id_hashes(batch["trip_id"]) % np.uint64(shards)) == shard

    return keep


def cpus_available() -> int:
    """The CPUs this process may use: its affinity, within its container's CPU quota
    (cgroup v2 `cpu.max`, a pod's CPU limit) when it has one."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus or 1, max(1, int(quota) // int(period)))
    return cpus or 1


def share_the_cores(shards: int) -> int:
    """Give pyarrow's decoding threads a shard's share of the CPUs (at least one); returns
    it. The shards of a run started together on one machine (the local engine, Airflow's
    LocalExecutor) then do not fight over its cores: two shards on 2 cores took 7% less wall
    time (bench/bench_scale.py). In a pod of its own a shard decodes with fewer threads
    than it could; decoding is about a tenth of its work."""
    import pyarrow as pa

    threads = max(1, cpus_available() // shards)
    pa.set_cpu_count(threads)
    return threads


def make_batch_features(
    names: ReleaseNames,
    n_trips: int,
    seed: int,
    rush_hours: list[int],
    features_path: str,
    batch_path: str,
    interval: Interval,
    source: DataSource | None = None,
    invalid_share: float = DEFAULT_MAX_INVALID_SHARE,
    shadow: bool = True,
    shard: int = 0,
    shards: int = 1,
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> int:
    """Features of the trips of one inference run's interval (of its shard's trips, with
    `shards`: `shard_keep`), each trip marked `served`
    when its user cluster is served by this version in the traffic assignment read as the
    run starts (every cluster while the environment has no assignment yet), written to the
    `features_path` folder a part per batch of `batch_rows` trips (a file source reads them
    a batch at a time). What was read (the interval, files or query, rows) goes to
    `batch_path` for the run's record.

    With `shadow` the version predicts the trips of the other clusters too (`served`
    false): every live version predicts the same trips, so their errors can be compared trip
    by trip (`inv ab`). Without it, only the served trips are kept (none when the version
    serves no cluster). A negative seed (the default of scheduled runs) draws the synthetic
    batch of the interval: a fresh one each period, the same one for every shard of a run.
    """
    from {{ cookiecutter.package }}.ml.features import build_features
    from {{ cookiecutter.package }}.ml.schema import (
        OPTIONAL_COLUMNS,
        TRIP_COLUMNS,
        ShapeReport,
        check_share,
        shape_rows,
    )

    clusters = traffic.clusters_for(open_store(names.artifact_root), names.version)
    if seed < 0:
        seed = int(hashlib.sha256(str(interval).encode()).hexdigest()[:8], 16) % 2**31
    source = source or data_source_of(names, None, n_trips, seed)
    keep = shard_keep(shard, shards) if shards > 1 else None
    if shards > 1:
        share_the_cores(shards)
    batches, read = inference_batches(
        source, n_trips, seed, [*TRIP_COLUMNS, *OPTIONAL_COLUMNS], interval, keep, batch_rows
    )
    parts = Path(features_path)
    parts.mkdir(parents=True, exist_ok=True)
    report, written, rows = ShapeReport(rows_in=0), 0, 0
    progress = Throughput(f"inference {names.version}" + (f" shard {shard}" if shards > 1 else ""))
    for batch in batches:  # a part of features per batch: memory is one batch
        progress.count(len(batch))
        if batch.empty:
            continue
        # A batch that carries its truth (the synthetic one) keeps it to the end of the run.
        trips, counted = shape_rows(batch, TARGET in batch, "the inference batch")
        report.add(counted)
        served = (
            trips["user_cluster"].isin(clusters)
            if clusters is not None
            else trips["user_cluster"] >= 0
        )
        if not shadow:
            trips, served = trips[served], served[served]
        if trips.empty:  # none of this batch's trips is this version's to predict
            continue
        features = build_features(trips, [int(h) for h in rush_hours])
        features[SERVED] = served.to_numpy(dtype=bool)
        features.to_parquet(parts / f"part-{written:05d}.parquet", index=False)
        written, rows = written + 1, rows + len(features)
        progress.count(0, parts=1)
    progress.done()
    record: dict[str, Any] = {"interval": interval.to_json(), "read": read}
    if shards > 1:
        record["shard"] = {"index": shard, "of": shards}
    if report.rows_in:  # else an empty period: nothing shaped, nothing to predict
        if report.invalid:
            print(f"shaping the inference batch: {report.summary()}")
        check_share(report, invalid_share, "the inference batch")
        record.update(
            rows_valid=report.rows_out, rows_invalid=report.invalid, served_clusters=clusters
        )
    Path(batch_path).write_text(json.dumps(record, default=str))
    return rows


def predict_batch(
    names: ReleaseNames,
    features_path: str,
    batch_path: str,
    run_id: str,
    predictions: PredictionSink | None = None,
    shard: int = 0,
    shards: int = 1,
) -> str:
    """Predict with the version's released model; the run's rows, served and shadow, go to
    the predictions sink (by default predictions/{version}/{run_id}.parquet in the store),
    then its record (`artifacts.prediction_runs`). Returns where they went, or why nothing
    was predicted (a line ending in `prediction_runs.NOTHING_PREDICTED`)."""
    import pandas as pd

    from {{ cookiecutter.package }}.ml import drift
    from {{ cookiecutter.package }}.ml.predict import predict

    record = json.loads(Path(batch_path).read_text())
    interval = Interval.from_json(record["interval"])
    if not record["read"].get("rows"):
        return f"no trips in {interval}: {NOTHING}"
    parts = sorted(Path(features_path).glob("part-*.parquet"))
    if not parts:
        if "shard" in record and not record["read"].get("kept"):
            return f"shard {shard} of {shards} holds no trips of {interval}: {NOTHING}"
        if record.get("rows_valid"):
            return f"{names.version} serves no user clusters now: {NOTHING}"
        return f"no valid trips in {interval}: {NOTHING}"
    model = load_model(names)
    sink = predictions or predictions_of(names)
    store = open_store(names.artifact_root)
    # Trips are counted in the reference's bins, so that `inv drift` can test them.
    reference = models.read_metadata(store, names).get("reference")
    # Every shard of a run writes under the run's id (`names.shard_run_id`); a shard of a
    # run started without one (a recurring run) names it by its interval's end.
    run_id = shard_run_id(run_id or scheduled_run_id(interval.end, str(interval)), shard, shards)
    # A task tried again (a shard retried alone after it failed half way) finds what its
    # earlier attempt wrote: the same run id, the same trips, so it is kept, not rewritten.
    # The same run id for another interval is another run: refused.
    earlier = prediction_runs.find(store, names.version, run_id)
    if earlier is not None and earlier.get("interval") != record["interval"]:
        raise AlreadyExistsError(
            f"run {run_id} of {names.version} exists already, for "
            f"{prediction_runs.interval_of(earlier)}: give this run another id"
        )
    predicted = served = 0
    locations = []
    summaries = []  # what the version was asked to predict (`ml.drift`), part by part
    for number, part in enumerate(parts):  # a part at a time: memory is one part
        features = pd.read_parquet(part)
        frame = predict(model, features, names.version)
        etas = frame["eta_minutes"].to_numpy()
        summaries.append(drift.summarize(features, etas, by_cluster=True, reference=reference))
        frame[SERVED] = features[SERVED].to_numpy(dtype=bool) if SERVED in features else True
        name = part_run_id(run_id, number, len(parts))
        try:
            locations.append(sink.write(names.version, name, frame))
        except AlreadyExistsError:
            locations.append(f"{sink.location(names.version)} ({name}: an earlier attempt's)")
        if TARGET in features:  # the synthetic batch's truth: its outcomes, from now on
            record_outcomes(names.artifact_root, features[["trip_id", TARGET]])
        predicted, served = predicted + len(frame), served + int(frame[SERVED].sum())
    written = locations[0] if len(locations) == 1 else f"{len(locations)} parts: {locations[0]} …"
    with suppress(AlreadyExistsError):
        prediction_runs.write(
            store,
            names.version,
            run_id,
            {
                **record,
                "predicted": predicted,
                "served": served,
                "predictions": locations,
                "inputs": drift.merge(summaries),
            },
        )
    return written
