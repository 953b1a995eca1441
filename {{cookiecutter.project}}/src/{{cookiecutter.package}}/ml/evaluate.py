"""Regression metrics of a model on a labelled feature frame, scored through the same
prediction function that batch and online inference call: a change to how predictions are
made shows in the release's metrics."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from {{ cookiecutter.package }}.ml import TARGET
from {{ cookiecutter.package }}.ml.features import model_input
from {{ cookiecutter.package }}.ml.predict import predict_etas


def evaluate(model: Any, labelled: pd.DataFrame) -> dict[str, float]:
    predicted = predict_etas(model, model_input(labelled))
    actual = labelled[TARGET]
    return {
        "mae": round(float(mean_absolute_error(actual, predicted)), 4),
        # mean(predicted - actual): a version that is late (or early) on average shows here
        "bias": round(float(np.mean(predicted - actual.to_numpy())), 4),
        "rmse": round(float(np.sqrt(mean_squared_error(actual, predicted))), 4),
        "r2": round(float(r2_score(actual, predicted)), 4),
        "n_test": len(labelled),
    }
