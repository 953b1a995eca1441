"""What each pipeline step does, as plain functions over the artifact store, the feature
store and the predictions sink (`artifacts.feature_store`, `artifacts.predictions`).

The training steps are here, with what every step shares (the stores a step's `storage`
parameter names); the inference steps are `pipelines.inference_steps`. Which of them make
up each workflow, with which parameters, is declared once in `pipelines.step_table`; kfp's
components and Airflow's tasks are derived from that table, so the same code runs in kfp's
local execution, on Kubeflow Pipelines, in Airflow and when called directly (tests,
benchmarks).

Every pipeline task is a fresh process, so each step imports only what it uses: pandas and
scikit-learn cost seconds to import, and only the steps that need them pay for them.
"""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from {{ cookiecutter.package }}.artifacts import models, prediction_runs
from {{ cookiecutter.package }}.artifacts.data_sources import (
    DataSource,
    describe,
    open_data_source,
    read_lineage,
    write_lineage,
)
from {{ cookiecutter.package }}.artifacts.feature_store import FeatureStore, open_feature_store
from {{ cookiecutter.package }}.artifacts.names import (
    ReleaseNames,
)
from {{ cookiecutter.package }}.artifacts.predictions import PredictionSink, open_predictions
from {{ cookiecutter.package }}.artifacts.store import AlreadyExistsError, StoreError, open_store
from {{ cookiecutter.package }}.ml import MAIN_METRIC, TARGET

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
