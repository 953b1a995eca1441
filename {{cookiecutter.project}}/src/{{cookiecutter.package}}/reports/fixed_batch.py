"""A version's predictions on one fixed, labelled batch, computed by that version's code.

`inv compare` runs this module with each version's own interpreter (its environment, as
`inv serve` does), so each version is scored by its own features and prediction code, not
by this checkout's. Same interface as the serving entry point: ARTIFACT_ROOT and
MODEL_VERSION in the environment; it prints one JSON object.
"""

from __future__ import annotations

import json
import os
from typing import Any

from {{ cookiecutter.package }}.artifacts import models
from {{ cookiecutter.package }}.artifacts.names import names_of_model
from {{ cookiecutter.package }}.artifacts.store import open_store
from {{ cookiecutter.package }}.ml import TARGET
from {{ cookiecutter.package }}.ml.data import make_trips
from {{ cookiecutter.package }}.ml.features import build_features
from {{ cookiecutter.package }}.ml.predict import predict

# Not the training seed: a batch no version was trained on, the same for every version.
N_TRIPS = 2000
SEED = 20_240_601


def score(root: str, version: str, n_trips: int = N_TRIPS, seed: int = SEED) -> dict[str, Any]:
    names = names_of_model(version, root)
    store = open_store(root)
    metadata = models.read_metadata(store, names)
    model = models.load(store, names)
    rush_hours = metadata["config"]["features"]["rush_hours"]
    features = build_features(make_trips(n_trips, seed), rush_hours)
    predicted = predict(model, features, version)["eta_minutes"]
    return {
        "version": version,
        "actual": [round(float(v), 3) for v in features[TARGET]],
        "predicted": [round(float(v), 3) for v in predicted],
    }


def main() -> None:
    print(json.dumps(score(os.environ["ARTIFACT_ROOT"], os.environ["MODEL_VERSION"])))


if __name__ == "__main__":
    main()
