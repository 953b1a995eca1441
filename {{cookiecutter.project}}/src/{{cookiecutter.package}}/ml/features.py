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


def feature_matrix(
    distance_km: np.ndarray,
    pickup_hour: np.ndarray,
    weekday: np.ndarray,
    area_cluster: np.ndarray,
    rush_hours: Sequence[int],
) -> np.ndarray:
    """The model's input, one row per trip, columns in FEATURE_COLUMNS order.

    The one definition of the features: batch pipelines reach it through `build_features`,
    the online app calls it on the request's arrays directly (no DataFrame on that path:
    building one costs more than the arithmetic for a one-trip request).
    """
    distance = np.asarray(distance_km, dtype=float)
    hour = np.asarray(pickup_hour)
    weekend = np.asarray(weekday) >= 5
    area = np.asarray(area_cluster)
    angle = 2 * np.pi * hour / 24
    columns = [
        distance,
        np.log1p(distance),
        np.sin(angle),
        np.cos(angle),
        np.isin(hour, list(rush_hours)) & ~weekend,
        weekend,
        *[area == i for i in range(N_AREAS)],
    ]
    return np.column_stack(columns).astype(float)


def build_features(trips: pd.DataFrame, rush_hours: Sequence[int]) -> pd.DataFrame:
    """Key columns, FEATURE_COLUMNS and, when the trips carry it, the target."""
    matrix = feature_matrix(
        trips["distance_km"].to_numpy(),
        trips["pickup_hour"].to_numpy(),
        trips["weekday"].to_numpy(),
        trips["area_cluster"].to_numpy(),
        rush_hours,
    )
    columns = {column: trips[column].to_numpy() for column in KEY_COLUMNS}
    columns |= dict(zip(FEATURE_COLUMNS, matrix.T, strict=True))
    if TARGET in trips:
        columns[TARGET] = trips[TARGET].to_numpy()
    return pd.DataFrame(columns, index=trips.index)


def model_input(features: pd.DataFrame) -> np.ndarray:
    """FEATURE_COLUMNS of a feature frame as the array models are fitted and called on.

    Models see plain arrays, never frames: the online path has no frame to give them.
    """
    return features[FEATURE_COLUMNS].to_numpy(dtype=float)
