"""Batch prediction: one row per trip, tagged with the version that produced it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from {{ cookiecutter.package }}.ml.features import model_input

if TYPE_CHECKING:  # pandas is imported where frames are made: not on the online path
    import pandas as pd


def predict_etas(model: Any, matrix: np.ndarray) -> np.ndarray:
    """ETA minutes for rows of the feature matrix: the one prediction, batch and online."""
    return np.asarray(model.predict(matrix)).round(2)


def predict(model: Any, features: pd.DataFrame, version: str) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(
        {
            "trip_id": features["trip_id"].to_numpy(),
            "user_cluster": features["user_cluster"].to_numpy(),
            "eta_minutes": predict_etas(model, model_input(features)),
            "model_version": version,
        }
    )
