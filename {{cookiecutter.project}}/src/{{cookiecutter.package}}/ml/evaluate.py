"""Regression metrics of a model on a labelled feature frame."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from {{ cookiecutter.package }}.ml import TARGET
from {{ cookiecutter.package }}.ml.features import model_input


def evaluate(model: Any, labelled: pd.DataFrame) -> dict[str, float]:
    predicted = model.predict(model_input(labelled))
    actual = labelled[TARGET]
    return {
        "mae": round(float(mean_absolute_error(actual, predicted)), 4),
        "rmse": round(float(np.sqrt(mean_squared_error(actual, predicted))), 4),
        "r2": round(float(r2_score(actual, predicted)), 4),
        "n_test": len(labelled),
    }
