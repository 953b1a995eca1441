"""A deterministic synthetic taxi-trip dataset, so the project runs with no download.

Trip duration (ETA, minutes) grows with distance and slows down in rush hours, on weekdays
and in dense areas; users belong to clusters that A/B releases split between versions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from {{ cookiecutter.package }}.ml import TARGET
from {{ cookiecutter.package }}.ml.users import user_cluster

N_AREAS = 8
# Minutes per km in each area cluster: the city centre (0) is slowest.
AREA_PACE = np.array([3.2, 2.8, 2.4, 2.2, 2.0, 1.8, 1.7, 1.6])

if TYPE_CHECKING:  # pandas is imported where frames are made: not on the online path
    import pandas as pd


def make_trips(n_trips: int, seed: int) -> pd.DataFrame:
    """`n_trips` trips; the same (n_trips, seed) always gives the same frame."""
    import pandas as pd

    if n_trips <= 0:
        raise ValueError(f"n_trips must be positive, got {n_trips}")
    rng = np.random.default_rng(seed)
    distance = rng.gamma(shape=2.0, scale=3.0, size=n_trips).round(2) + 0.3
    hour = rng.integers(0, 24, size=n_trips)
    weekday = rng.integers(0, 7, size=n_trips)
    area = rng.integers(0, N_AREAS, size=n_trips)
    user_id = rng.integers(0, 50_000, size=n_trips)
    rush = np.isin(hour, [7, 8, 9, 16, 17, 18]) & (weekday < 5)
    congestion = 1.0 + 0.6 * rush + 0.15 * (weekday < 5) - 0.2 * ((hour < 6) | (hour > 22))
    eta = 3.0 + distance * AREA_PACE[area] * congestion + rng.normal(0.0, 1.5, size=n_trips)
    return pd.DataFrame(
        {
            "trip_id": [f"{seed}-{i}" for i in range(n_trips)],
            "user_id": user_id,
            "user_cluster": user_cluster(user_id),
            "distance_km": distance,
            "pickup_hour": hour,
            "weekday": weekday,
            "area_cluster": area,
            TARGET: np.clip(eta, 1.0, None).round(2),
        }
    )
