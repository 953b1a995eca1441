"""Feature engineering shared by training and inference (one function, both pipelines)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

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

if TYPE_CHECKING:  # pandas is imported where frames are made: not on the online path
    import pandas as pd


# The features as BigQuery SQL, one expression per FEATURE_COLUMNS entry over the typed trip
# columns: what `feature_matrix` computes, for features built where the trips are. A test
# holds the two equal on the same trips (tests/test_bigquery.py).
FEATURE_SQL = {
    "distance_km": "distance_km",
    "log_distance": "LN(1 + distance_km)",
    "hour_sin": "SIN(2 * ACOS(-1) * pickup_hour / 24)",
    "hour_cos": "COS(2 * ACOS(-1) * pickup_hour / 24)",
    "is_rush_hour": "IF(pickup_hour IN ({rush_hours}) AND weekday < 5, 1.0, 0.0)",
    "is_weekend": "IF(weekday >= 5, 1.0, 0.0)",
    **{f"area_{i}": f"IF(area_cluster = {i}, 1.0, 0.0)" for i in range(N_AREAS)},
}


def feature_sql(rush_hours: Sequence[int]) -> list[str]:
    """The SELECT list of a features table: key columns, FEATURE_COLUMNS, the target."""
    hours = ", ".join(str(int(h)) for h in rush_hours) or "NULL"
    features = [
        f"{FEATURE_SQL[name].format(rush_hours=hours)} AS {name}" for name in FEATURE_COLUMNS
    ]
    return [*KEY_COLUMNS, *features, TARGET]


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
    # Written column by column into one array: for the few trips of an online request the
    # cost is the number of numpy calls, not the rows, so fewer calls is what counts.
    matrix = np.empty((len(distance), len(FEATURE_COLUMNS)))
    matrix[:, 0] = distance
    matrix[:, 1] = np.log1p(distance)
    matrix[:, 2] = np.sin(angle)
    matrix[:, 3] = np.cos(angle)
    matrix[:, 4] = (hour[:, None] == np.asarray(rush_hours, dtype=int)).any(axis=1) & ~weekend
    matrix[:, 5] = weekend
    matrix[:, 6:] = area[:, None] == np.arange(N_AREAS)
    return matrix


def build_features(trips: pd.DataFrame, rush_hours: Sequence[int]) -> pd.DataFrame:
    """Key columns, FEATURE_COLUMNS and, when the trips carry it, the target."""
    import pandas as pd

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
