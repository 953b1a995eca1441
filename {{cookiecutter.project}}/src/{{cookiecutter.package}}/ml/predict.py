"""Batch prediction: one row per trip, tagged with the version that produced it."""

from __future__ import annotations

from typing import Any

import pandas as pd

from {{ cookiecutter.package }}.ml.features import model_input


def predict(model: Any, features: pd.DataFrame, version: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "trip_id": features["trip_id"].to_numpy(),
            "user_cluster": features["user_cluster"].to_numpy(),
            "eta_minutes": model.predict(model_input(features)).round(2),
            "model_version": version,
        }
    )
