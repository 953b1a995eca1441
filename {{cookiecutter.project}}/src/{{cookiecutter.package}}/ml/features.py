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
    """Key columns, FEATURE_COLUMNS and, when the trips carry it, the target.

    Columns are computed as arrays and assembled once: adding them to a frame one by one
    costs more than the arithmetic, which matters for one-trip online requests.
    """
    distance = trips["distance_km"].to_numpy(dtype=float)
    hour = trips["pickup_hour"].to_numpy()
    weekend = trips["weekday"].to_numpy() >= 5
    area = trips["area_cluster"].to_numpy()
    angle = 2 * np.pi * hour / 24
    columns = {column: trips[column].to_numpy() for column in KEY_COLUMNS}
    columns |= {
        "distance_km": distance,
        "log_distance": np.log1p(distance),
        "hour_sin": np.sin(angle),
        "hour_cos": np.cos(angle),
        "is_rush_hour": (np.isin(hour, list(rush_hours)) & ~weekend).astype(int),
        "is_weekend": weekend.astype(int),
        **{f"area_{i}": (area == i).astype(int) for i in range(N_AREAS)},
    }
    if TARGET in trips:
        columns[TARGET] = trips[TARGET].to_numpy()
    return pd.DataFrame(columns, index=trips.index)
