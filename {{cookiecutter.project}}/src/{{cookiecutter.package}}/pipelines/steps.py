"""What each pipeline step does, as plain functions over the artifact store, the feature
store and the predictions sink (`artifacts.feature_store`, `artifacts.predictions`).

Which of them make up each workflow, with which parameters, is declared once in
`pipelines.step_table`; kfp's components and Airflow's tasks are derived from that table, so
the same code runs in kfp's local execution, on Kubeflow Pipelines, in Airflow and when
called directly (tests, benchmarks).

Every pipeline task is a fresh process, so each step imports only what it uses: pandas and
scikit-learn cost seconds to import, and only the steps that need them pay for them.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from {{ cookiecutter.package }}.artifacts import models, prediction_runs, traffic
from {{ cookiecutter.package }}.artifacts.data_sources import (
    DataSource,
    Keep,
    describe,
    inference_batches,
    open_data_source,
    read_lineage,
    record_outcomes,
    write_lineage,
)
from {{ cookiecutter.package }}.artifacts.feature_store import FeatureStore, open_feature_store
from {{ cookiecutter.package }}.artifacts.intervals import Interval
from {{ cookiecutter.package }}.artifacts.names import (
    ReleaseNames,
    part_run_id,
    scheduled_run_id,
    shard_run_id,
)
from {{ cookiecutter.package }}.artifacts.predictions import SERVED, PredictionSink, open_predictions
from {{ cookiecutter.package }}.artifacts.store import AlreadyExistsError, StoreError, open_store
from {{ cookiecutter.package }}.errors import UserError
from {{ cookiecutter.package }}.ml import MAIN_METRIC, TARGET
from {{ cookiecutter.package }}.progress import Throughput

if TYPE_CHECKING:
    import pandas as pd

    from {{ cookiecutter.package }}.ml.schema import ShapeReport

DEFAULT_MAX_INVALID_SHARE = 0.01
DEFAULT_BATCH_ROWS = 500_000
NOTHING = prediction_runs.NOTHING_PREDICTED


def storage(spec: str | dict | None) -> dict:
    """The `storage` parameter of the pipelines: JSON of {feature_store, predictions,
    data_source, max_invalid_share, shadow}: where data comes from and goes to."""
    if isinstance(spec, str):
        return dict(json.loads(spec or "{}"))
    return dict(spec or {})


def feature_store_of(names: ReleaseNames, spec: str | dict | None = None) -> FeatureStore:
    return open_feature_store(storage(spec).get("feature_store"), names.artifact_root)


def predictions_of(names: ReleaseNames, spec: str | dict | None = None) -> PredictionSink:
    return open_predictions(storage(spec).get("predictions"), names.artifact_root)


def data_source_of(
    names: ReleaseNames, spec: str | dict | None = None, n_trips: int = 0, seed: int = 0
) -> DataSource:
    """The configured data source; the synthetic generator with (n_trips, seed) if none."""
    return open_data_source(
        storage(spec).get("data_source"), names.artifact_root, n_trips=n_trips, seed=seed
    )


def batch_rows(spec: str | dict | None = None) -> int:
    """How many trips a step holds at a time (`data.batch_rows`)."""
    return int(storage(spec).get("batch_rows", DEFAULT_BATCH_ROWS))


def train_rows(spec: str | dict | None = None) -> int | None:
    """The most trips training uses (`data.train_rows`); None: all of them."""
    found = storage(spec).get("train_rows")
    return int(found) if found else None


def max_invalid_share(spec: str | dict | None = None) -> float:
    return float(storage(spec).get("max_invalid_share", DEFAULT_MAX_INVALID_SHARE))


def shadow_of(spec: str | dict | None = None) -> bool:
    """Whether a batch run predicts every trip (its own clusters served, the others in
    shadow) or only the trips of the clusters its version serves (`traffic.shadow`)."""
    return bool(storage(spec).get("shadow", True))


def shaped_trips(
    trips: pd.DataFrame, labelled: bool, invalid_share: float, where: str
) -> tuple[pd.DataFrame, ShapeReport]:
    """Raw trips through the declared schema (`ml.schema`): valid rows and the report."""
    from {{ cookiecutter.package }}.ml.schema import shape

    shaped, report = shape(trips, labelled, invalid_share, where)
    if report.invalid:
        print(f"shaping {where}: {report.summary()}")
    return shaped, report


def training_trips(
    source: DataSource, invalid_share: float
) -> tuple[pd.DataFrame, dict[str, Any], ShapeReport]:
    """The source's training trips through the declared schema, their lineage with the
    shaping's counts, and the shaping's report: what a feature version (and an experiment)
    is built from."""
    from {{ cookiecutter.package }}.ml.schema import OPTIONAL_COLUMNS, TRIP_COLUMNS

    trips, lineage = source.read_trips([*TRIP_COLUMNS, *OPTIONAL_COLUMNS, TARGET])
    shaped, report = shaped_trips(trips, True, invalid_share, describe(source.identity()))
    lineage = {**lineage, "rows_valid": report.rows_out, "rows_invalid": report.invalid}
    return shaped, lineage, report


def load_model(names: ReleaseNames) -> Any:
    """The released model of `names.version`, verified against its metadata."""
    return models.load(open_store(names.artifact_root), names)


def ensure_features(
    names: ReleaseNames,
    n_trips: int,
    seed: int,
    rush_hours: list[int],
    features: FeatureStore | None = None,
    source: DataSource | None = None,
    invalid_share: float = DEFAULT_MAX_INVALID_SHARE,
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> str:
    """Create the training features of the feature version from the data source, a batch
    of `batch_rows` trips at a time (`pipelines.feature_build`: shaped by the declared
    schema, lineage recorded), or reuse them when they exist."""
    features = features or feature_store_of(names)
    if features.exists(names.feature_version):
        return "reused"
    if names.feature_version != names.version:
        # A pin names features another release produced: computing them here would put
        # this version's code under that version's name.
        raise StoreError(
            f"pinned feature version {names.feature_version} does not exist at "
            f"{features.location(names.feature_version)}"
        )
    from {{ cookiecutter.package }}.pipelines import feature_build

    source = source or data_source_of(names, None, n_trips, seed)
    hours = [int(h) for h in rush_hours]
    try:
        if feature_build.builds_in_bigquery(source, features):
            report, lineage = feature_build.build_in_bigquery(
                names.feature_version, source, features, hours, invalid_share
            )
        else:
            report, lineage = feature_build.build_feature_version(
                names.feature_version, source, features, hours, invalid_share, batch_rows
            )
    except AlreadyExistsError:
        return "reused"  # another run created them first: same inputs, same features
    write_lineage(names.artifact_root, names.feature_version, lineage)
    return f"created: {report.summary()}"


def train_and_evaluate(
    names: ReleaseNames,
    model_config: dict,
    test_fraction: float,
    seed: int,
    model_path: str,
    features: FeatureStore | None = None,
    train_rows: int | None = None,
    sample_path: str = "",
) -> dict[str, float]:
    """Fit on the train split of the version's features, pickle the model to `model_path`,
    return its metrics on the test split. With `train_rows`, on a deterministic sample of
    that many trips, read part by part (`ml.sampling`); what was used goes to
    `sample_path`, for the model's metadata."""
    from {{ cookiecutter.package }}.ml import drift
    from {{ cookiecutter.package }}.ml.evaluate import evaluate
    from {{ cookiecutter.package }}.ml.features import model_input
    from {{ cookiecutter.package }}.ml.fitting import fit, split
    from {{ cookiecutter.package }}.ml.predict import predict_etas
    from {{ cookiecutter.package }}.ml.sampling import bottom_k

    store = features or feature_store_of(names)
    frame, sample = bottom_k(store.read_batches(names.feature_version), train_rows)
    if sample["sample"] != "all":
        used, seen = sample["rows_used"], sample["rows_seen"]
        print(f"training on {used:,} of {seen:,} trips: {sample['sample']}")
    train_split, test_split = split(frame, test_fraction, seed)
    model = fit(train_split, model_config)
    Path(model_path).write_bytes(pickle.dumps(model))
    if sample_path:
        # What drift is measured against (`ml.drift`): the training trips, and the model's
        # predictions on the held-out ones; published with the model.
        etas = predict_etas(model, model_input(test_split))
        reference = drift.summarize(train_split, etas, as_reference=True)
        Path(sample_path).write_text(json.dumps({**sample, "reference": reference}))
    return evaluate(model, test_split)


def publish_model(
    names: ReleaseNames,
    model_path: str,
    metrics: dict[str, float],
    git_sha: str,
    config: dict,
    features: FeatureStore | None = None,
    sample_path: str = "",
) -> str:
    """Release the trained model (see `artifacts.models`: one create-only commit point)."""
    store = open_store(names.artifact_root)
    training = json.loads(Path(sample_path).read_text()) if sample_path else None
    reference = training.pop("reference", None) if training else None
    if models.released(store, names):
        raise AlreadyExistsError(
            f"model {names.version} is already released at "
            f"{names.uri(names.model_metadata_key)}; bump the version to train a new one"
        )
    from {{ cookiecutter.package }}.ml import numpy_models

    model = Path(model_path).read_bytes()
    committed = models.publish(
        store,
        names,
        model,
        {
            "feature_version": names.feature_version,
            "features": (features or feature_store_of(names)).location(names.feature_version),
            # What the features were read from (data source, files or snapshot, rows, hash).
            "data": read_lineage(names.artifact_root, names.feature_version),
            # Which of the features' rows training used (`data.train_rows`).
            "training_rows": training,
            # What `inv drift` compares what the version is asked to predict with.
            "reference": reference,
            "main_metric": MAIN_METRIC,
            "metrics": metrics,
            "git_sha": git_sha,
            "config": config,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
        # What the version's servers load: no scikit-learn, the same predictions.
        serving=numpy_models.export(pickle.loads(model)),
    )
    return str(committed["model"])


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
