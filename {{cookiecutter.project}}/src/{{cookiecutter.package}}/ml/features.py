"""Feature engineering shared by training and inference (one function, both pipelines)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from {{ cookiecutter.package }}.ml import TARGET
from {{ cookiecutter.package }}.ml.data import N_AREAS

KEY_COLUMNS = ["trip_id", "user_cluster"]
FEATURE_COLUMNS = [
    "distance_km",
    "log_distance",
    "hour_sin",
    "hour_cos",
    "is_rush_hour",
    "is_weekend",
    *[f"area_{i}" for i in range(N_AREAS)],
]


def build_features(trips: pd.DataFrame, rush_hours: Sequence[int]) -> pd.DataFrame:
    """Key columns, FEATURE_COLUMNS and, when the trips carry it, the target."""
    features = pd.DataFrame({column: trips[column] for column in KEY_COLUMNS})
    features["distance_km"] = trips["distance_km"].astype(float)
    features["log_distance"] = np.log1p(features["distance_km"])
    angle = 2 * np.pi * trips["pickup_hour"] / 24
    features["hour_sin"] = np.sin(angle)
    features["hour_cos"] = np.cos(angle)
    weekend = trips["weekday"] >= 5
    features["is_rush_hour"] = (trips["pickup_hour"].isin(list(rush_hours)) & ~weekend).astype(int)
    features["is_weekend"] = weekend.astype(int)
    for i in range(N_AREAS):
        features[f"area_{i}"] = (trips["area_cluster"] == i).astype(int)
    if TARGET in trips:
        features[TARGET] = trips[TARGET]
    return features
