"""What each pipeline step does, as plain functions over the artifact store.

The kfp components are one-line shims over these, so the same code runs in kfp's local
execution, on Kubeflow Pipelines, and when called directly (tests, benchmarks).

Every pipeline task is a fresh process, so each step imports only what it uses: pandas and
scikit-learn cost seconds to import, and only the steps that need them pay for them.
"""

from __future__ import annotations

import io
import pickle
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from {{ cookiecutter.package }}.artifacts import models, traffic
from {{ cookiecutter.package }}.artifacts.names import ReleaseNames
from {{ cookiecutter.package }}.artifacts.store import AlreadyExistsError, StoreError, open_store
from {{ cookiecutter.package }}.ml import MAIN_METRIC, TARGET

if TYPE_CHECKING:
    import pandas as pd


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _read_parquet(data: bytes) -> pd.DataFrame:
    import pandas as pd

    return pd.read_parquet(io.BytesIO(data))


def load_model(names: ReleaseNames) -> Any:
    """The released model of `names.version`, verified against its metadata."""
    return models.load(open_store(names.artifact_root), names)


def ensure_features(names: ReleaseNames, n_trips: int, seed: int, rush_hours: list[int]) -> str:
    """Create the training features of the feature version, or reuse them when they exist."""
    store = open_store(names.artifact_root)
    key = names.features_key("train")
    if store.exists(key):
        return "reused"
    if names.feature_version != names.version:
        # A pin names features another release produced: computing them here would put
        # this version's code under that version's name.
        raise StoreError(
            f"pinned feature version {names.feature_version} does not exist at "
            f"{names.uri(names.features_prefix)}"
        )
    from {{ cookiecutter.package }}.ml.data import make_trips
    from {{ cookiecutter.package }}.ml.features import build_features

    features = build_features(make_trips(n_trips, seed), [int(h) for h in rush_hours])
    try:
        store.write(key, _parquet_bytes(features))
    except AlreadyExistsError:
        return "reused"  # another run created them first: same inputs, same features
    return "created"


def train_and_evaluate(
    names: ReleaseNames, model_config: dict, test_fraction: float, seed: int, model_path: str
) -> dict[str, float]:
    """Fit on the train split of the version's features, pickle the model to `model_path`,
    return its metrics on the test split."""
    from {{ cookiecutter.package }}.ml.evaluate import evaluate
    from {{ cookiecutter.package }}.ml.train import fit, split

    store = open_store(names.artifact_root)
    features = _read_parquet(store.read(names.features_key("train")))
    train_split, test_split = split(features, test_fraction, seed)
    model = fit(train_split, model_config)
    Path(model_path).write_bytes(pickle.dumps(model))
    return evaluate(model, test_split)


def publish_model(
    names: ReleaseNames, model_path: str, metrics: dict[str, float], git_sha: str, config: dict
) -> str:
    """Release the trained model (see `artifacts.models`: one create-only commit point)."""
    store = open_store(names.artifact_root)
    if models.released(store, names):
        raise AlreadyExistsError(
            f"model {names.version} is already released at "
            f"{names.uri(names.model_metadata_key)}; bump the version to train a new one"
        )
    committed = models.publish(
        store,
        names,
        Path(model_path).read_bytes(),
        {
            "feature_version": names.feature_version,
            "features": names.uri(names.features_key("train")),
            "main_metric": MAIN_METRIC,
            "metrics": metrics,
            "git_sha": git_sha,
            "config": config,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    )
    return str(committed["model"])


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def make_batch_features(
    names: ReleaseNames, n_trips: int, seed: int, rush_hours: list[int], features_path: str
) -> int:
    """Features of one inference batch: the trips of the user clusters that the version
    serves now, read from the traffic assignment as the run starts (every cluster while the
    environment has no assignment yet; none when the version serves none).

    A negative seed (the default of scheduled runs) draws a fresh batch each run.
    """
    from {{ cookiecutter.package }}.ml.data import make_trips
    from {{ cookiecutter.package }}.ml.features import build_features

    clusters = traffic.clusters_for(open_store(names.artifact_root), names.version)
    if seed < 0:
        seed = uuid.uuid4().int % 2**31
    trips = make_trips(n_trips, seed).drop(columns=[TARGET])
    if clusters is not None:
        trips = trips[trips["user_cluster"].isin(clusters)]
    features = build_features(trips, [int(h) for h in rush_hours])
    features.to_parquet(features_path, index=False)
    return len(features)


def predict_batch(names: ReleaseNames, features_path: str, run_id: str) -> str:
    """Predict with the version's released model; write predictions/{version}/{run_id}."""
    import pandas as pd

    from {{ cookiecutter.package }}.ml.predict import predict

    features = pd.read_parquet(features_path)
    if features.empty:
        return ""  # the version serves no user clusters now: nothing to predict
    model = load_model(names)
    predictions = predict(model, features, names.version)
    key = names.predictions_key(run_id or new_run_id())
    open_store(names.artifact_root).write(key, _parquet_bytes(predictions))
    return names.uri(key)
